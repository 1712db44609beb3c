"""Training schedules through the API.

* ``GET|POST /projects/{id}/schedules/``: a project's schedules; a new one from a run or a registered model;
* ``POST /schedules/from-run/``: a schedule for a run's model, copying the run (the spec's "from-run");
* ``GET /schedules/preview/?source_run_id=``: what a schedule made from that run would train;
* ``POST /schedules/next-runs/``: the next fire times of a schedule not saved yet, in its zone and in UTC;
* ``GET|PATCH|DELETE /schedules/{id}/``, ``POST /schedules/{id}/pause|resume|cancel|trigger/``;
* ``GET /schedules/{id}/history/``: its runs, each version's main metric and whether it got better;
* ``GET|POST /projects/{id}/notifications/``, ``DELETE .../{target_id}/``: targets told of every schedule of a
  project (a schedule's own are ``/schedules/{id}/notifications/``).

A schedule is reached through its project: outsiders get 404. Routes only: the rules are ``services``'s
and ``scheduler``'s; every change is recorded in the audit trail here.
"""

from __future__ import annotations

from django.http import Http404
from ninja import Router, Status

from ml_pipeline.errors import Problem
from ml_platform.audit import services as audit
from ml_platform.core.errors import Invalid, refusals
from ml_platform.core.fields import Id
from ml_platform.projects.access import object_for_user, project_for_user
from ml_platform.registry.models import RegisteredModel
from ml_platform.schedules import presenters, scheduler, services
from ml_platform.schedules.models import NotificationTarget, TrainingSchedule
from ml_platform.schedules.schemas import (
    DeliveryOut,
    FromRunIn,
    HistoryOut,
    NextRunsOut,
    ScheduleCreateIn,
    ScheduleIn,
    ScheduleOut,
    SourcePreviewOut,
    TargetCreatedOut,
    TargetIn,
    TargetOut,
    TimingIn,
)
from ml_platform.training.access import run_for_user

router = Router(tags=["schedules"])


def schedule_for_user(user, schedule_id: int) -> TrainingSchedule:
    found = (
        TrainingSchedule.objects.select_related(*presenters.SCHEDULE_RELATED)
        .filter(pk=schedule_id, project__memberships__user=user)
        .first()
    )
    if found is None:
        raise Http404("No such schedule")
    return found


def _out(schedule: TrainingSchedule) -> dict:
    return presenters.schedule_out(schedule_for_reading(schedule.pk))


def schedule_for_reading(schedule_id: int) -> TrainingSchedule:
    return TrainingSchedule.objects.select_related(*presenters.SCHEDULE_RELATED).get(pk=schedule_id)


def _created(request, schedule: TrainingSchedule, payload: ScheduleIn):
    audit.record(request, audit.Action.SCHEDULE_CREATE, schedule, changes=payload.model_dump(mode="json"))
    return Status(201, _out(schedule))


@router.get("/projects/{project_id}/schedules/", response={200: list[ScheduleOut], **refusals(404, 422)})
def list_schedules(request, project_id: int):
    """The project's schedules by name."""
    project = project_for_user(request.user, project_id)
    found = TrainingSchedule.objects.filter(project=project).select_related(*presenters.SCHEDULE_RELATED)
    return [presenters.schedule_out(schedule) for schedule in found]


@router.post("/projects/{project_id}/schedules/", response={201: ScheduleOut, **refusals(400, 404, 409, 422)})
def create_schedule(request, project_id: int, payload: ScheduleCreateIn):
    """From ``source_training_run_id`` (its model gets the schedule) or ``registered_model_id``; 409 when the
    model has a schedule already."""
    project = project_for_user(request.user, project_id)
    if (payload.source_training_run_id is None) == (payload.registered_model_id is None):
        raise Invalid(
            [Problem(f, "give exactly one of them") for f in ("source_training_run_id", "registered_model_id")]
        )
    if payload.source_training_run_id is not None:
        run = run_for_user(request.user, payload.source_training_run_id)
        if run.project_id != project.pk:
            raise Http404("No such training run")
        schedule = services.create_from_run(run, request.user, payload.fields())
    else:
        registered = object_for_user(RegisteredModel, request.user, payload.registered_model_id)
        if registered.project_id != project.pk:
            raise Http404("No such registered model")
        schedule = services.create_for_model(registered, request.user, payload.fields())
    return _created(request, schedule, payload)


@router.post("/schedules/from-run/", response={201: ScheduleOut, **refusals(400, 404, 409, 422)})
def create_from_run(request, payload: FromRunIn):
    """A schedule for the run's registered model (made from the run's name when it has none), copying the
    run's configuration; 409 "Model 'X' already has a schedule (ID: N)..." when it has one."""
    run = run_for_user(request.user, payload.source_training_run_id)
    return _created(request, services.create_from_run(run, request.user, payload.fields()), payload)


@router.get("/schedules/preview/", response={200: SourcePreviewOut, **refusals(404, 422)})
def preview_source(request, source_run_id: Id):
    """What a schedule made from the run would train, and whether its model has a schedule already."""
    run = run_for_user(request.user, source_run_id, "dataset", "feature_config", "model_config", "registered_model")
    existing = services.existing_schedule(run.registered_model) if run.registered_model else None
    return {
        "source_run_id": run.pk,
        "source_run_name": run.name,
        "source_run_number": run.run_number,
        "registered_model_id": run.registered_model_id,
        "has_schedule": existing is not None,
        "schedule_id": existing.pk if existing else None,
        "dataset_id": run.dataset_id,
        "dataset_name": run.dataset.name if run.dataset else None,
        "feature_config_id": run.feature_config_id,
        "feature_config_name": run.feature_config.name if run.feature_config else None,
        "model_config_id": run.model_config_id,
        "model_config_name": run.model_config.name if run.model_config else None,
        "model_type": run.model_type,
        "training_params": run.training_params,
        "gpu_config": run.gpu_config,
    }


@router.post("/schedules/next-runs/", response={200: NextRunsOut, **refusals(400, 422)})
def next_runs(request, payload: TimingIn):
    """The next 5 fire times of the timing given (nothing is saved), in the zone and in UTC, with notes: a
    time the zone skips that day, the months a monthly schedule on the 29th-31st skips."""
    fields = services.ScheduleFields(name="", **payload.model_dump())
    return presenters.next_runs(services.preview(fields))


@router.get("/schedules/{schedule_id}/", response={200: ScheduleOut, **refusals(404, 422)})
def get_schedule(request, schedule_id: int):
    return presenters.schedule_out(schedule_for_user(request.user, schedule_id))


@router.patch("/schedules/{schedule_id}/", response={200: ScheduleOut, **refusals(400, 404, 409, 422)})
def update_schedule(request, schedule_id: int, payload: ScheduleIn):
    """New timing, name or policies (the whole timing is given); the next run is recomputed from now."""
    schedule = services.update(schedule_for_user(request.user, schedule_id), payload.fields())
    audit.record(request, audit.Action.SCHEDULE_UPDATE, schedule, changes=payload.model_dump(mode="json"))
    return _out(schedule)


@router.delete("/schedules/{schedule_id}/", response={204: None, **refusals(404, 422)})
def delete_schedule(request, schedule_id: int):
    """The schedule and its history; the runs it made stay (they are the model's versions)."""
    schedule = schedule_for_user(request.user, schedule_id)
    with audit.recording(request, audit.Action.SCHEDULE_DELETE, schedule):
        services.delete(schedule)
    return Status(204, None)


def _status_route(action: str, change, doc: str):
    @router.post(
        f"/schedules/{{schedule_id}}/{action}/",
        response={200: ScheduleOut, **refusals(404, 409, 422)},
        operation_id=f"ml_platform_schedules_api_{action}_schedule",
        summary=f"{action.capitalize()} Schedule",
        description=doc,
    )
    def route(request, schedule_id: int):
        schedule = change(schedule_for_user(request.user, schedule_id))
        audit.record(request, audit.Action.SCHEDULE_UPDATE, schedule, changes={"status": schedule.status})
        return _out(schedule)


_status_route("pause", services.pause, "Nothing fires while paused; what falls due meanwhile is never fired later.")
_status_route("resume", services.resume, "Active again from the next occurrence after now.")
_status_route("cancel", services.cancel, "Stopped for good; its history stays (delete it to schedule the model anew).")


@router.post("/schedules/{schedule_id}/trigger/", response={200: HistoryOut, **refusals(404, 409, 422)})
def trigger_schedule(request, schedule_id: int):
    """A run now, from the schedule's configuration (its own next run does not move); its history."""
    schedule = schedule_for_user(request.user, schedule_id)
    services.check_triggerable(schedule)
    firing = scheduler.trigger_now(schedule, request.user)
    audit.record(
        request, audit.Action.SCHEDULE_UPDATE, schedule, changes={"triggered": firing.run_id, "firing": firing.status}
    )
    return presenters.history(schedule)


@router.get("/schedules/{schedule_id}/history/", response={200: HistoryOut, **refusals(404, 422)})
def schedule_history(request, schedule_id: int):
    """Its firings oldest first: each run's status (skipped ones with the reason), its version, its main
    metric, the change on the previous run's and whether that is better; the threshold and deployed version."""
    return presenters.history(schedule_for_user(request.user, schedule_id))


# --------------------------------------------------------------------------- notifications


@router.get("/schedules/{schedule_id}/notifications/", response={200: list[TargetOut], **refusals(404, 422)})
def list_notification_targets(request, schedule_id: int):
    return list(schedule_for_user(request.user, schedule_id).notification_targets.all())


@router.post("/schedules/{schedule_id}/notifications/", response={201: TargetCreatedOut, **refusals(400, 404, 422)})
def add_notification_target(request, schedule_id: int, payload: TargetIn):
    """Tell an e-mail address or a URL of the schedule's events; a webhook's signing secret is answered once."""
    schedule = schedule_for_user(request.user, schedule_id)
    target = services.add_notification_target(schedule, payload.kind, payload.address, payload.events)
    audit.record(request, audit.Action.SCHEDULE_UPDATE, schedule, changes={"notify": payload.model_dump()})
    secret = target.secret if target.kind == NotificationTarget.WEBHOOK else None
    return Status(201, {**TargetOut.model_validate(target).model_dump(), "secret": secret})


@router.delete("/schedules/{schedule_id}/notifications/{target_id}/", response={204: None, **refusals(404, 422)})
def remove_notification_target(request, schedule_id: int, target_id: int):
    schedule = schedule_for_user(request.user, schedule_id)
    target = schedule.notification_targets.filter(pk=target_id).first()
    if target is None:
        raise Http404("No such notification target")
    audit.record(request, audit.Action.SCHEDULE_UPDATE, schedule, changes={"stop_notifying": str(target)})
    target.delete()
    return Status(204, None)


@router.get("/schedules/{schedule_id}/deliveries/", response={200: list[DeliveryOut], **refusals(404, 422)})
def list_deliveries(request, schedule_id: int):
    """The schedule's notifications, newest first: each one's attempts and the last answer."""
    return list(schedule_for_user(request.user, schedule_id).deliveries.all()[:100])


# --------------------------------------------------------------------------- a project's notifications


@router.get("/projects/{project_id}/notifications/", response={200: list[TargetOut], **refusals(404, 422)})
def list_project_targets(request, project_id: int):
    """The project's targets: told of every schedule of the project, besides each schedule's own."""
    return list(project_for_user(request.user, project_id).notification_targets.all())


@router.post("/projects/{project_id}/notifications/", response={201: TargetCreatedOut, **refusals(400, 404, 422)})
def add_project_target(request, project_id: int, payload: TargetIn):
    """Tell an e-mail address or a URL of the events of every schedule of the project (a webhook's signing
    secret is answered once)."""
    project = project_for_user(request.user, project_id)
    target = services.add_notification_target(project, payload.kind, payload.address, payload.events)
    audit.record(request, audit.Action.UPDATE, project, changes={"notify": payload.model_dump()})
    secret = target.secret if target.kind == NotificationTarget.WEBHOOK else None
    return Status(201, {**TargetOut.model_validate(target).model_dump(), "secret": secret})


@router.delete("/projects/{project_id}/notifications/{target_id}/", response={204: None, **refusals(404, 422)})
def remove_project_target(request, project_id: int, target_id: int):
    project = project_for_user(request.user, project_id)
    target = project.notification_targets.filter(pk=target_id).first()
    if target is None:
        raise Http404("No such notification target")
    audit.record(request, audit.Action.UPDATE, project, changes={"stop_notifying": str(target)})
    target.delete()
    return Status(204, None)
