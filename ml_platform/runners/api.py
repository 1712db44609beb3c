"""A project's runner through the API: ``GET`` / ``PUT /projects/{id}/runner/``.

The answer lists the runners this installation has configured (the wizard offers only those), what each
unconfigured one lacks, and the GPU types the training region offers (the wizard's GPU choices).
"""

from __future__ import annotations

from django.conf import settings
from ninja import Router, Schema
from pydantic import Field

from ml_platform.audit import services as audit
from ml_platform.core.errors import refusals
from ml_platform.projects.access import owned_project_for_user, project_for_user
from ml_platform.runners import choices, config, services
from ml_platform.training.schemas import RemoteRunnerName

router = Router(tags=["runners"])


class RunnerIn(Schema):
    runner: RemoteRunnerName


class RunnerOut(Schema):
    runner: RemoteRunnerName = Field(description="Where the project's runs go unless a run names its own")
    configured: list[RemoteRunnerName] = Field(description="The runners this installation can use")
    missing: dict[str, list[str]] = Field(description="runner -> the settings it still needs")
    data_region: str
    gpu_training_region: str
    gpu_choices: dict[str, list[int]] = Field(
        description="GPU type -> the counts a machine carries, for the types Vertex AI training offers in "
        "the GPU training region (every type where no region is set)"
    )
    gpu_unavailable: dict[str, dict[str, str]] = Field(
        description="configured runner -> GPU type -> why a run there cannot have it (the wizard disables it)"
    )


def runner_answer(project) -> dict:
    region = choices.training_region()
    configured = config.configured_runners()
    return {
        "runner": services.project_runner(project),
        "configured": configured,
        "missing": {runner: config.missing(runner) for runner in config.RUNNERS if config.missing(runner)},
        "data_region": settings.CLOUD_DATA_REGION,
        "gpu_training_region": region,
        "gpu_choices": choices.gpu_choices("vertex" if region else "local"),
        "gpu_unavailable": {runner: choices.unavailable_gpus(runner) for runner in configured},
    }


@router.get("/projects/{project_id}/runner/", response={200: RunnerOut, **refusals(404, 422)})
def get_runner(request, project_id: int):
    """The project's runner and the choices this installation offers."""
    return runner_answer(project_for_user(request.user, project_id))


@router.put("/projects/{project_id}/runner/", response={200: RunnerOut, **refusals(400, 403, 404, 422)})
def put_runner(request, project_id: int, payload: RunnerIn):
    """Owners only; a runner this installation has not configured is refused naming the settings it lacks."""
    project = owned_project_for_user(request.user, project_id)
    before = services.project_runner(project)
    services.set_project_runner(project, payload.runner)
    audit.record(request, audit.Action.UPDATE, project, changes={"runner": {"before": before, "after": payload.runner}})
    return runner_answer(project)
