"""One run's pipeline as a KFP v2 pipeline spec (the kfp SDK's IR YAML), for Vertex AI Pipelines and Kubeflow.

Each selected stage is a container component running the platform's pipeline image with the same stage
code the local runner runs::

    python -m ml_pipeline stage <Stage> --spec <the run's spec> --root <artifact root> --run-id <run> ...

in pipeline order, each task after the one before it. Stages hand each other artifacts through the
artifact store under the remote artifact root (the same layout as locally), so each task's KFP cache
key is the stage's local fingerprint: an unchanged stage is reused there as it is here.

The Trainer with GPUs is where the two runners differ:

* **vertex**: the Trainer task runs ``python -m ml_pipeline launch-trainer``, which starts a Vertex AI
  custom job in the GPU training region (the rest of the pipeline runs in the data region: the spec's
  split-region design) with the worker pools compiled here, one per shape to try in order (the run's
  GPUs first, then the fallback order), spot when the run is preemptible;
* **kubeflow**: the Trainer task itself asks for ``nvidia.com/gpu`` and a node selector on the GKE
  accelerator label.

Nothing here reads a clock or a random source: compiling the same run twice gives the same spec. The
webhook secret is a pipeline parameter without a default, given at submission, so it is never in the
compiled file.
"""

# No ``from __future__ import annotations``: kfp reads the component functions' annotations as types.
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from ml_pipeline.data.bigquery import EXPORT_URI_ENV
from ml_pipeline.kfp.gpus import ACCELERATORS, GpuShape, check_region, shapes
from ml_pipeline.spec import STAGES, PipelineSpec

Backend = Literal["vertex", "kubeflow"]
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
PREEMPTIBLE_RETRIES = 3


@dataclass(frozen=True)
class RemoteTarget:
    """Where and how a compiled pipeline runs (built by the platform from its settings)."""

    backend: Backend
    image: str  # the CPU pipeline image
    gpu_image: str  # the GPU variant, for the Trainer when it has GPUs
    pipeline_root: str  # KFP's own root (gs://bucket/prefix)
    artifact_root: str  # where the stages' artifact store lives inside the containers (/gcs/bucket/prefix/...)
    data_region: str = ""  # the pipeline, data stages, Evaluator and Pusher (vertex)
    gpu_region: str = ""  # the Trainer's custom job (vertex; default: the data region)
    project_id: str = ""
    service_account: str = ""
    fallback: tuple[GpuShape, ...] = ()
    webhook_url: str = ""  # the run's webhook root: <platform>/api/training-runs/<id>/webhook

    @property
    def training_region(self) -> str:
        return self.gpu_region or self.data_region


def gpu_check(gpus: int) -> list[str]:
    """The command prefix that prints the visible GPUs and refuses to start without them (the entrypoint)."""
    return ["python", "-m", "ml_pipeline.kfp.entrypoint", "--gpus", str(gpus), "--"]


def worker_pools(spec: PipelineSpec, target: RemoteTarget, gpu_type: str | None) -> list[dict]:
    """The Trainer's Vertex AI worker pool per shape to try, in order (empty: the Trainer needs no GPU)."""
    order = shapes(gpu_type, spec.training.hardware.gpu_count, list(target.fallback), target.training_region)
    return [
        {
            "machine_spec": {
                "machine_type": shape.machine_type,
                "accelerator_type": shape.accelerator.vertex_type,
                "accelerator_count": shape.gpu_count,
            },
            "replica_count": 1,
            "container_spec": {"image_uri": target.gpu_image},
        }
        for shape in order
    ]


def _component(name: str, image: str, command: list[str], fingerprint: str, extra_args: list[str]):
    """A container component for one stage: the stage command with the pipeline's parameters as arguments."""
    from kfp import dsl

    def body(spec: str, artifact_root: str, run_id: str, webhook_url: str, webhook_secret: str):
        return dsl.ContainerSpec(
            image=image,
            command=command,
            args=[
                "--spec",
                spec,
                "--root",
                artifact_root,
                "--run-id",
                run_id,
                "--fingerprint",
                fingerprint,
                "--webhook-url",
                webhook_url,
                "--webhook-secret",
                webhook_secret,
                *extra_args,
            ],
        )

    body.__name__ = name.lower()
    return dsl.container_component(body)


def _trainer_command(spec: PipelineSpec, target: RemoteTarget, gpu_type: str | None, preemptible: bool):
    """The Trainer's image, command and extra arguments (the GPUs a kubeflow task asks for are set on it)."""
    gpus = spec.training.hardware.gpu_count
    if gpus == 0:
        return target.image, ["python", "-m", "ml_pipeline", "stage", "Trainer"], []
    if target.backend == "kubeflow":
        return target.gpu_image, [*gpu_check(gpus), "python", "-m", "ml_pipeline", "stage", "Trainer"], []
    pools = worker_pools(spec, target, gpu_type)
    launcher_args = [
        "--project",
        target.project_id,
        "--region",
        target.training_region,
        "--service-account",
        target.service_account,
        "--staging-dir",
        f"{target.pipeline_root.rstrip('/')}/custom-jobs",
        "--worker-pools",
        json.dumps(pools, sort_keys=True),
        "--spot" if preemptible else "--no-spot",
    ]
    return target.image, ["python", "-m", "ml_pipeline", "launch-trainer"], launcher_args


def compile_pipeline(
    spec: PipelineSpec,
    target: RemoteTarget,
    *,
    run_id: str,
    fingerprints: dict[str, str],
    gpu_type: str | None = None,
    preemptible: bool = False,
) -> str:
    """The IR YAML of ``spec``'s pipeline for ``target``; ConfigError when the GPUs asked for cannot be had there.

    ``fingerprints`` are the stages' local fingerprints (``PipelineRunner.fingerprints()``): the cache keys.
    """
    from kfp import compiler, dsl, kubernetes

    hardware = spec.training.hardware
    if hardware.gpu_count and target.backend == "vertex":
        check_region(gpu_type or "T4", target.training_region)
    stages = [name for name in STAGES if name in spec.stages]
    components = {}
    for name in stages:
        if name == "Trainer":
            image, command, extra = _trainer_command(spec, target, gpu_type, preemptible)
        else:
            image, command, extra = target.image, ["python", "-m", "ml_pipeline", "stage", name], []
        components[name] = _component(name, image, command, fingerprints[name], extra)
    spec_json = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    reads_bigquery = spec.dataset.source.kind == "bigquery"

    @dsl.pipeline(name=_pipeline_name(spec.name), pipeline_root=target.pipeline_root)
    def pipeline(
        webhook_secret: str,
        spec: str = spec_json,
        artifact_root: str = target.artifact_root,
        run_id: str = run_id,
        webhook_url: str = target.webhook_url,
    ):
        previous = None
        for name in stages:
            task = components[name](
                spec=spec,
                artifact_root=artifact_root,
                run_id=run_id,
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
            )
            task.set_display_name(name)
            task.set_caching_options(True, cache_key=fingerprints[name])
            if reads_bigquery and name in ("Compile", "ExampleGen"):
                # Where ExampleGen's EXPORT DATA writes the rows (ml_pipeline.data.bigquery); Compile dry-runs there.
                task.set_env_variable(EXPORT_URI_ENV, f"{target.pipeline_root.rstrip('/')}/bigquery-exports")
            if previous is not None:
                task.after(previous)
            if name == "Trainer" and hardware.gpu_count and target.backend == "kubeflow":
                task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(hardware.gpu_count)
                label = ACCELERATORS[gpu_type or "T4"].gke_label
                kubernetes.add_node_selector(task, GKE_ACCELERATOR_LABEL, label)
                if preemptible:  # a preempted node's pod is retried; the Trainer resumes from its checkpoints
                    task.set_retry(num_retries=PREEMPTIBLE_RETRIES)
            previous = task

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pipeline.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        return path.read_text()


def load_ir(text: str) -> tuple[dict, dict]:
    """The pipeline spec and the platform spec (empty when there is none) of a compiled IR YAML."""
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    return documents[0], (documents[1] if len(documents) > 1 else {})


def _pipeline_name(name: str) -> str:
    """KFP pipeline names are lower-case letters, digits and dashes."""
    cleaned = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return cleaned or "pipeline"
