"""Pusher: export a blessed model for serving and copy it to the push destination.

Only a blessed model is pushed: when the Evaluator did not bless it the stage
stops with :class:`SkipStage` (status "skipped", no artifact). Otherwise it
writes ``output/serving_model/`` — a SavedModel with ``serving_default``
(top-K over the whole catalog), ``query_embedding``, ``candidate_embedding``
and, with a rating head, ``predict_rating`` (see :mod:`ml_pipeline.serving.export`)
— and copies it to ``push.destination`` when one is set: a local folder or an
fsspec URL, copied under a temporary name first and renamed into place, so
a reader never sees half a model.

The catalog to serve comes from ExampleGen's ``catalog.parquet`` (its
product features are embedded with the candidate model at export time), so
the Pusher reads ExampleGen as well as the Trainer and the Evaluator.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

from ml_pipeline.artifact_types import Examples, Model, ModelEvaluation, PushedModel
from ml_pipeline.config.features import FeatureConfig
from ml_pipeline.config.model import ModelType
from ml_pipeline.config.scann import ScannChoice
from ml_pipeline.model.inputs import tower_batch
from ml_pipeline.spec import PipelineSpec, PushConfig
from ml_pipeline.stages.base import SkipStage, Stage, StageContext, StageFailure, StageParams, StageResult

BUYER_SAMPLE_ROWS = 2_000


class PusherParams(StageParams):
    """Where the model goes, and how its top-K is served over the catalog its features embed."""

    push: PushConfig
    retrieval_algorithm: str
    scann: ScannChoice = "auto"
    retrieval_k: list[int]
    model_type: ModelType
    features: FeatureConfig


def _is_url(destination: str) -> bool:
    return "://" in destination and not destination.startswith("file://")


def push_folder(source: Path, destination: str) -> str:
    """Copy ``source`` (a folder) to ``destination`` via a temporary name and a rename; returns where it went.

    An earlier model at the destination is replaced.
    """
    if _is_url(destination):
        return _push_fsspec(source, destination)
    target = Path(destination.removeprefix("file://")).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging = target.parent / f".{target.name}.tmp-{tag}"
    shutil.copytree(source, staging)
    if target.exists():
        retired = target.parent / f".{target.name}.old-{tag}"
        os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, target)
    return str(target)


def _push_fsspec(source: Path, destination: str) -> str:
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a dependency of the project
        raise StageFailure(f"push.destination: '{destination}' is a URL; install fsspec to push there") from None
    fs, root = fsspec.core.url_to_fs(destination)
    root = root.rstrip("/")
    tag = uuid.uuid4().hex[:8]
    parent = root.rsplit("/", 1)[0] if "/" in root else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    staging = f"{root}.tmp-{tag}"
    fs.put(str(source), staging, recursive=True)
    if fs.exists(root):
        retired = f"{root}.old-{tag}"
        fs.mv(root, retired, recursive=True)
        fs.mv(staging, root, recursive=True)
        fs.rm(retired, recursive=True)
    else:
        fs.mv(staging, root, recursive=True)
    return destination


class Pusher(Stage[PusherParams]):
    name = "Pusher"
    inputs = {"ExampleGen": Examples, "Trainer": Model, "Evaluator": ModelEvaluation}
    output = PushedModel
    Params = PusherParams
    version = 1

    def params(self, spec: PipelineSpec) -> PusherParams:
        return PusherParams(
            push=spec.push,
            retrieval_algorithm=spec.model.retrieval_algorithm,
            scann=spec.model.scann,
            retrieval_k=spec.model.retrieval_k,
            model_type=spec.model.model_type,
            features=spec.features,
        )

    @staticmethod
    def _buyer_sample(examples: Examples, spec: PusherParams, rows: int = BUYER_SAMPLE_ROWS):
        """The buyer tower's inputs for the first rows of the eval split (else train): the queries ScaNN's
        recall is checked with. Read a record batch at a time, so a 10M-row split costs no more than a small one."""
        import pyarrow.dataset as ds

        split = next((s for s in ("eval", "train") if examples.has_split(s)), None)
        if split is None:
            return None
        table = ds.dataset(str(examples.path / split), format="parquet").head(rows)
        return tower_batch(table, spec.features, "buyer") if table.num_rows else None

    def run(self, ctx: StageContext, spec: PusherParams) -> StageResult:
        from ml_pipeline.serving.export import export_serving_model

        blessing = ctx.input(ModelEvaluation).blessing()
        if not blessing.blessed:
            raise SkipStage(f"model not blessed: {blessing.why_not()}")

        trained = ctx.input(Model).load()
        catalog = ctx.input(Examples).read_catalog()
        catalog_ids = np.asarray(catalog.column("product_id").cast(pa.string()).to_pylist(), dtype=object)
        catalog_inputs = tower_batch(catalog, spec.features, "product")
        k = max(spec.retrieval_k)
        serving_path = PushedModel(ctx.output).serving_model_path
        ctx.log.info(
            "exporting the serving model: %s products, top %s by %s",
            f"{len(catalog_ids):,}",
            min(k, len(catalog_ids)),
            spec.retrieval_algorithm,
        )
        try:
            config = export_serving_model(
                trained,
                catalog_ids,
                catalog_inputs,
                serving_path,
                k,
                spec.retrieval_algorithm,
                spec.model_type,
                scann_params=spec.scann,
                query_inputs=self._buyer_sample(ctx.input(Examples), spec)
                if spec.retrieval_algorithm == "scann"
                else None,
            )
        except (KeyError, ValueError) as error:
            raise StageFailure(f"the serving model cannot be exported: {error}") from None

        # A string join, not a Path: on a non-local artifact root the final output is a URL (gs://…).
        final_path = f"{str(ctx.final_output).rstrip('/')}/serving_model"
        pushed_to = str(final_path)
        if spec.push.destination:
            ctx.log.info("copying the serving model to %s", spec.push.destination)
            pushed_to = push_folder(serving_path, spec.push.destination)
        signatures = sorted(config["signatures"])
        where = pushed_to if spec.push.destination else "the run's output"
        scann = config.get("scann") or {}
        checked = f", recall@{config['k']} {scann['recall']:.3f} on a sample" if scann.get("recall") is not None else ""
        summary = (
            f"pushed to {where}: top-{config['k']} over {config['catalog_size']:,} products "
            f"({config['retrieval']}{checked}), signatures {', '.join(signatures)}"
        )
        return StageResult(
            summary,
            {
                "serving_model": str(final_path),
                "pushed_to": pushed_to,
                "signatures": signatures,
                "retrieval": config["retrieval"],
                "k": config["k"],
                "catalog_size": config["catalog_size"],
                "scann": config.get("scann"),  # the parameters chosen and the recall@K checked, with ScaNN
            },
        )
