"""What each remote runner needs from the settings, which runners are configured, and the compile target.

A runner is *configured* when every setting it needs is set (see :data:`REQUIRED`); choosing one that is
not is refused naming the missing settings, and the pages offer only the configured ones.
"""

from __future__ import annotations

from django.conf import settings

from ml_pipeline.errors import ConfigError, Problem
from ml_pipeline.kfp.compiler import RemoteTarget
from ml_pipeline.kfp.gpus import GpuShape, parse_order

RUNNERS = ("local", "kubeflow", "vertex")
REQUIRED = {
    "local": (),
    "vertex": (
        "CLOUD_PROJECT_ID",
        "CLOUD_DATA_REGION",
        "CLOUD_STAGING_BUCKET",
        "CLOUD_SERVICE_ACCOUNT",
        "PIPELINE_IMAGE",
        "PLATFORM_URL",
    ),
    "kubeflow": ("KUBEFLOW_HOST", "KUBEFLOW_PIPELINE_ROOT", "REMOTE_ARTIFACT_ROOT", "PIPELINE_IMAGE", "PLATFORM_URL"),
}


def missing(runner: str) -> list[str]:
    return [name for name in REQUIRED[runner] if not str(getattr(settings, name, "") or "").strip()]


def configured_runners() -> list[str]:
    return [runner for runner in RUNNERS if not missing(runner)]


def require(runner: str, field: str = "runner") -> None:
    """ConfigError naming ``field`` when ``runner`` is unknown or a setting it needs is not set."""
    if runner not in RUNNERS:
        raise ConfigError(Problem(field, f"unknown runner '{runner}'; one of {', '.join(RUNNERS)}"))
    absent = missing(runner)
    if absent:
        raise ConfigError(Problem(field, f"the {runner} runner is not configured: set {', '.join(absent)}"))
    if runner == "vertex" and not settings.CLOUD_STAGING_BUCKET.startswith("gs://"):
        raise ConfigError(Problem(field, "CLOUD_STAGING_BUCKET must be a gs:// URL"))


def fallback_order(given: list[str] | None) -> list[GpuShape]:
    if given is not None:
        return parse_order(",".join(given), "gpu_config.fallback")
    return parse_order(settings.GPU_FALLBACK_ORDER, "GPU_FALLBACK_ORDER")


def gcs_mount(url: str) -> str:
    """Where Vertex AI mounts a gs:// URL inside its containers (Cloud Storage FUSE): /gcs/<bucket>/<path>."""
    return "/gcs/" + url.removeprefix("gs://").strip("/")


def webhook_url(run_id: int) -> str:
    return f"{settings.PLATFORM_URL.rstrip('/')}/api/training-runs/{run_id}/webhook"


def target(runner: str, run_id: int, fallback: list[GpuShape]) -> RemoteTarget:
    """The compile target of ``runner`` for one run (``require`` it first)."""
    image = settings.PIPELINE_IMAGE
    gpu_image = settings.PIPELINE_GPU_IMAGE or image
    if runner == "vertex":
        root = f"{settings.CLOUD_STAGING_BUCKET.rstrip('/')}/pipelines"
        return RemoteTarget(
            backend="vertex",
            image=image,
            gpu_image=gpu_image,
            pipeline_root=root,
            artifact_root=settings.REMOTE_ARTIFACT_ROOT or f"{gcs_mount(root)}/artifacts",
            data_region=settings.CLOUD_DATA_REGION,
            gpu_region=settings.CLOUD_GPU_TRAINING_REGION,
            project_id=settings.CLOUD_PROJECT_ID,
            service_account=settings.CLOUD_SERVICE_ACCOUNT,
            fallback=tuple(fallback),
            webhook_url=webhook_url(run_id),
        )
    return RemoteTarget(
        backend="kubeflow",
        image=image,
        gpu_image=gpu_image,
        pipeline_root=settings.KUBEFLOW_PIPELINE_ROOT,
        artifact_root=settings.REMOTE_ARTIFACT_ROOT,
        fallback=tuple(fallback),
        webhook_url=webhook_url(run_id),
    )
