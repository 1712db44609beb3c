"""From catalog objects to the pipeline spec a run executes.

A run freezes snapshots of its dataset, feature config and model config when
it is created; the spec is rebuilt from those snapshots and the run's own
parameters, so editing a catalog object later never changes a run.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from django.conf import settings

from ml_pipeline.data.access import real_path
from ml_pipeline.errors import ConfigError, Problem, validate_model
from ml_pipeline.spec import STAGES, PipelineSpec
from ml_platform.datasets.access import data_access_for
from ml_platform.datasets.services import resolve_config

# Pipeline-spec sections and the run fields (API names) they come from, so a
# problem found in the spec is reported against the field the user sent.
SPEC_TO_RUN_FIELD = {
    "split": "split_config",
    "training.hardware": "gpu_config",
    "training": "training_params",
    "evaluator": "evaluator_config",
    "features": "feature_config",
    "model": "model_config",
    "dataset": "dataset",
}


def run_field(spec_field: str) -> str:
    for prefix, field in SPEC_TO_RUN_FIELD.items():
        if spec_field == prefix or spec_field.startswith(prefix + "."):
            return field + spec_field[len(prefix) :]
    return spec_field


def as_run_problems(error: ConfigError) -> ConfigError:
    return ConfigError([Problem(run_field(p.field), p.message) for p in error.problems])


def safe_name(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", ".".join(parts))


def pipeline_name(project_name: str) -> str:
    """One pipeline folder per project: every run and experiment of the project shares its stage cache, so
    a stage is reused whenever its fingerprint (config, inputs, source data) matches, whatever run made it."""
    return safe_name(project_name)


def push_destination(project_name: str, run_name: str, run_number: int) -> str:
    return str(Path(settings.PIPELINE_ROOT) / "pushed" / safe_name(project_name, run_name) / str(run_number))


def check_baseline_model(project, uri: str | None) -> None:
    """A baseline model a user names must be one of the project's own models or lie in an allowed folder.

    The Evaluator loads it and reports its metrics, so another project's model (or any folder the server can
    read) must not be reachable by naming its path.
    """
    if not uri:
        return
    path = real_path(uri)
    root = real_path(settings.PIPELINE_ROOT)
    own_pipeline = root / pipeline_name(project.unique_name)
    pushed = root / "pushed"
    own_pushed = (
        path != pushed
        and path.is_relative_to(pushed)
        and path.relative_to(pushed).parts[0].startswith(f"{pipeline_name(project.unique_name)}.")
    )
    if not (own_pushed or path.is_relative_to(own_pipeline) or data_access_for(project).permits(path)):
        raise ConfigError(
            Problem(
                "evaluator_config.baseline_model_uri",
                f"'{uri}' is neither a model of this project nor in a folder listed in DATASET_ALLOWED_ROOTS",
            )
        )


def training_section(training_params: dict, gpu_config: dict) -> dict:
    hardware = {
        "gpu_count": gpu_config.get("gpu_count", 0),
        "allow_cpu_fallback": gpu_config.get("allow_cpu_fallback", False),
    }
    return {**training_params, "hardware": hardware}


def build_spec(
    *,
    project,
    name: str,
    run_number: int,
    dataset_snapshot: dict,
    feature_config: dict,
    model_config: dict,
    split_config: dict,
    training_params: dict,
    gpu_config: dict,
    evaluator_config: dict,
    with_pusher: bool = True,
    data_as_of: datetime | str | None = None,
) -> PipelineSpec:
    """The validated pipeline spec; problems name the run's fields (training_params.epochs, ...).

    ``name`` is the registered model's name (an experiment has none): it places the pushed model.
    ``data_as_of`` (a scheduled run's occurrence) ends the dataset's relative window and a time_holdout
    split's holdout, if there is one: only then is it in the spec, so it never keeps a run without one from
    reusing ExampleGen's output.
    """
    try:
        dataset = resolve_config(
            project, dataset_snapshot["source"], dataset_snapshot["mapping"], dataset_snapshot.get("filters")
        )
        ends = dataset.filters.last_days or (split_config or {}).get("strategy") == "time_holdout"
        as_of = {"as_of": data_as_of} if data_as_of and ends else {}
        data = {
            "name": pipeline_name(project.unique_name),
            "dataset": {**dataset.model_dump(mode="json"), **as_of},
            "split": split_config,
            "features": feature_config,
            "model": model_config,
            "training": training_section(training_params, gpu_config),
            "evaluator": {k: v for k, v in evaluator_config.items()},
            "push": {"destination": push_destination(project.unique_name, name, run_number)},
        }
        if not with_pusher:
            data["stages"] = [stage for stage in STAGES if stage != "Pusher"]
        return validate_model(PipelineSpec, data)
    except ConfigError as error:
        raise as_run_problems(error) from None
