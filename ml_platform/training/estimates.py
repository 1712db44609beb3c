"""How long a run would take and what it would cost, from this platform's own history.

The Trainer measures its throughput (``final_metrics.examples_per_second``); the estimate averages it
over the project's finished runs and experiments of the same model type, scales it by the examples the
new run would train on (the dataset's rows x the sample share x epochs), and prices the hours with the
runs' own price table (``TrainingRun.cost_so_far``). With no such run yet it says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

from django.db.models import Avg, Count, FloatField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from ml_pipeline.errors import ConfigError, Problem
from ml_platform.core import clock
from ml_platform.datasets.models import Dataset
from ml_platform.modeling.models import ModelConfig
from ml_platform.registry.models import RegisteredModel
from ml_platform.training.models import TrainingRun

FINISHED = (TrainingRun.COMPLETED, TrainingRun.NOT_BLESSED)


@dataclass(frozen=True)
class Estimate:
    model_type: str
    rows: int | None
    epochs: int
    examples: int | None
    based_on_runs: int
    examples_per_second: float | None
    seconds: float | None
    cost_usd: float | None
    basis: str

    def as_dict(self) -> dict:
        return asdict(self)


def throughput(project, model_type: str) -> tuple[int, float | None]:
    """(how many finished runs measured it, their mean examples per second) for the model type."""
    measured = TrainingRun.objects.filter(
        project=project, model_type=model_type, status__in=FINISHED, final_metrics__has_key="examples_per_second"
    ).aggregate(runs=Count("id"), mean=Avg(Cast(KT("final_metrics__examples_per_second"), FloatField())))
    return measured["runs"], measured["mean"]


def estimate(
    project,
    *,
    model_type: str,
    rows: int | None,
    epochs: int,
    sample_percent: float = 100.0,
    gpu_type: str | None = None,
    gpu_count: int = 0,
) -> Estimate:
    runs, per_second = throughput(project, model_type)
    kind = dict(RegisteredModel.MODEL_TYPES).get(model_type, model_type).lower()
    examples = round(rows * sample_percent / 100 * epochs) if rows is not None else None
    if not runs or not per_second:
        basis = f"No history yet: no {kind} run of this project has finished, so there is nothing to measure from."
        return Estimate(model_type, rows, epochs, examples, 0, None, None, None, basis)
    basis = f"From {runs} earlier {kind} run{'s' if runs != 1 else ''}, ~{_compact(per_second)} examples/s"
    if examples is None:
        return Estimate(
            model_type,
            rows,
            epochs,
            None,
            runs,
            per_second,
            None,
            None,
            basis + " (the dataset's size is not known yet: preview it)",
        )
    seconds = examples / per_second
    start = clock.now()
    shell = TrainingRun(
        gpu_config={"gpu_type": gpu_type, "gpu_count": gpu_count},
        started_at=start,
        completed_at=start + timedelta(seconds=seconds),
    )
    return Estimate(
        model_type,
        rows,
        epochs,
        examples,
        runs,
        round(per_second, 1),
        round(seconds, 1),
        float(shell.cost_so_far()),
        f"{basis}, for {_compact(examples)} examples ({_compact(rows)} rows x {sample_percent:g}% x {epochs} epochs)",
    )


def _compact(value: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def estimate_for(
    project,
    *,
    experiment_id: int | None = None,
    dataset_id: int | None = None,
    model_config_id: int | None = None,
    epochs: int = 10,
    sample_percent: float | None = None,
    gpu_type: str | None = None,
    gpu_count: int = 0,
) -> Estimate:
    """The estimate of a run made from an experiment (promoted: all the data by default) or from a dataset and a
    model config; ConfigError naming the field for an object that is not in the project."""
    if experiment_id is not None:
        experiment = TrainingRun.objects.filter(project=project, kind=TrainingRun.EXPERIMENT, pk=experiment_id).first()
        if experiment is None:
            raise ConfigError(Problem("experiment_id", f"no experiment {experiment_id} in this project"))
        model_type, dataset = experiment.model_type, experiment.dataset
    else:
        problems = [
            Problem(f, "required (or give experiment_id)")
            for f, v in (("dataset_id", dataset_id), ("model_config_id", model_config_id))
            if v is None
        ]
        if problems:
            raise ConfigError(problems)
        dataset = Dataset.objects.filter(project=project, pk=dataset_id).first()
        model = ModelConfig.objects.filter(project=project, pk=model_config_id).first()
        problems = [
            Problem(f, f"no {what} {i} in this project")
            for f, what, i, found in (
                ("dataset_id", "dataset", dataset_id, dataset),
                ("model_config_id", "model config", model_config_id, model),
            )
            if found is None
        ]
        if problems:
            raise ConfigError(problems)
        model_type = model.model_type
    rows = (dataset.preview or {}).get("rows") if dataset is not None else None
    return estimate(
        project,
        model_type=model_type,
        rows=rows,
        epochs=epochs,
        sample_percent=100.0 if sample_percent is None else sample_percent,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
    )
