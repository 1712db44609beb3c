"""What a new run may choose: the runners this installation has configured, and the GPU types each offers.

The API (``GET /projects/{id}/runner/``) and the New Training wizard read the same answers, so the wizard
offers what :func:`ml_platform.runners.services.choose` would accept: a runner whose settings are all set
(local always), and on Vertex AI only the GPU types custom training offers in the GPU training region (the
regional table in :mod:`ml_pipeline.kfp.gpus`); locally and on Kubeflow the machine's or cluster's GPUs are
not known here, so every type is offered.
"""

from __future__ import annotations

from django.conf import settings

from ml_pipeline.kfp.gpus import MACHINE_TYPES, TRAINING_REGIONS, regions_with
from ml_platform.runners import config

GPU_TYPES = tuple(MACHINE_TYPES)
LABELS = {"local": "Local (this installation)", "kubeflow": "Kubeflow Pipelines", "vertex": "Vertex AI Pipelines"}


def training_region() -> str:
    return settings.CLOUD_GPU_TRAINING_REGION or settings.CLOUD_DATA_REGION


def unavailable_gpus(runner: str) -> dict[str, str]:
    """GPU type -> why ``runner`` cannot have it (only Vertex AI's region refuses types)."""
    if runner != "vertex":
        return {}
    region = training_region()
    offered = TRAINING_REGIONS.get(region, frozenset())
    reasons = {}
    for gpu in GPU_TYPES:
        if gpu not in offered:
            elsewhere = ", ".join(regions_with(gpu)) or "none"
            reasons[gpu] = (
                f"not offered for training in {region or 'the unset region'} (regions with {gpu}: {elsewhere})"
            )
    return reasons


def gpu_choices(runner: str) -> dict[str, list[int]]:
    """GPU type -> the counts a machine carries, for the types ``runner`` offers."""
    refused = unavailable_gpus(runner)
    return {gpu: sorted(counts) for gpu, counts in MACHINE_TYPES.items() if gpu not in refused}


def runner_options() -> list[dict]:
    """Every runner with whether it is configured and, if not, the settings it lacks."""
    options = []
    for runner in config.RUNNERS:
        absent = config.missing(runner)
        reason = f"not configured: set {', '.join(absent)}" if absent else ""
        options.append({"runner": runner, "label": LABELS[runner], "configured": not absent, "reason": reason})
    return options


def gpu_options(runners: list[str]) -> list[dict]:
    """Every GPU type with the counts a machine carries and, per runner in ``runners``, why it is refused there."""
    refused = {runner: unavailable_gpus(runner) for runner in runners}
    return [
        {
            "gpu_type": gpu,
            "counts": sorted(MACHINE_TYPES[gpu]),
            "refused": {runner: reasons[gpu] for runner, reasons in refused.items() if gpu in reasons},
        }
        for gpu in GPU_TYPES
    ]
