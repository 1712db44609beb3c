"""Fixtures of the remote-runner tests: a small demo data file, a spec per model type, and compile targets."""

from __future__ import annotations

import pytest

from ml_pipeline import demo_data
from ml_pipeline.demo_configs import DEMO_FEATURE_CONFIG, DEMO_MAPPING, DEMO_MODEL_CONFIGS
from ml_pipeline.kfp.compiler import RemoteTarget
from ml_pipeline.kfp.gpus import DEFAULT_FALLBACK, parse_order
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import PipelineSpec

MODEL_CONFIGS = {config["model_type"]: config for config in DEMO_MODEL_CONFIGS.values()}


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("kfp-data") / "purchases.parquet"
    demo_data.write(demo_data.DemoSpec(rows=1_000, seed=3), path)
    return path


@pytest.fixture
def make_spec(demo_file):
    def make(model_type: str = "retrieval", gpus: int = 0, **sections) -> PipelineSpec:
        data = {
            "name": "b2b-recs",
            "dataset": {"source": {"kind": "file", "path": str(demo_file)}, "mapping": DEMO_MAPPING},
            "features": DEMO_FEATURE_CONFIG,
            "model": MODEL_CONFIGS[model_type],
            "training": {"epochs": 3, "hardware": {"gpu_count": gpus}},
            **sections,
        }
        return PipelineSpec.model_validate(data)

    return make


@pytest.fixture
def fingerprints_of(tmp_path):
    def of(spec: PipelineSpec) -> dict[str, str]:
        return PipelineRunner(spec, tmp_path / "local-root", run_id="run-7").fingerprints()

    return of


def target(backend: str = "vertex", **changes) -> RemoteTarget:
    fields = {
        "backend": backend,
        "image": "europe-docker.pkg.dev/acme/ml/pipeline:1.0",
        "gpu_image": "europe-docker.pkg.dev/acme/ml/pipeline-gpu:1.0",
        "pipeline_root": "gs://acme-staging/pipelines",
        "artifact_root": "/gcs/acme-staging/pipelines/artifacts",
        "data_region": "europe-central2",
        "gpu_region": "europe-west4",
        "project_id": "acme-recs",
        "service_account": "pipelines@acme-recs.iam.gserviceaccount.com",
        "fallback": tuple(parse_order(DEFAULT_FALLBACK)),
        "webhook_url": "https://ml.acme.example/api/training-runs/7/webhook",
        **changes,
    }
    return RemoteTarget(**fields)


@pytest.fixture
def vertex():
    return target("vertex")


@pytest.fixture
def kubeflow():
    return target("kubeflow", pipeline_root="minio://mlpipeline/v2", artifact_root="/mnt/artifacts")


@pytest.fixture
def make_target():
    return target
