"""The schedule pages: the schedule dialog (an htmx partial form), its live next runs, and a schedule's page.

The dialog is one partial (``_dialog.html``): a Schedule button asks for it (``?run=`` or ``?model=``) and
htmx appends it to the page, where it opens itself; posting it answers the same partial with the refusal
next to its fields, or sends the browser to the new schedule's page. Its fields are named as the API
names them, checked by the API's own input schema and saved by the same services (audit record included);
the next runs are the server's (``services.preview``), asked again whenever a field changes.
"""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ml_platform.audit import services as audit
from ml_platform.core.errors import Conflict, Invalid
from ml_platform.core.fields import MAX_ID
from ml_platform.core.forms import REFUSALS, FieldErrors, checked, nested, refusal
from ml_platform.core.partials import is_htmx
from ml_platform.projects.access import object_for_user
from ml_platform.registry.models import RegisteredModel
from ml_platform.schedules import api as schedules_api
from ml_platform.schedules import notification_pages, presenters, scheduler, services, timing
from ml_platform.schedules.models import NotifyEvent, OnBlessed, OverlapPolicy
from ml_platform.schedules.schemas import ScheduleCreateIn, ScheduleIn, TimingIn
from ml_platform.training.access import run_for_user

DEFAULTS = {
    "schedule_type": "weekly",
    "schedule_time": "09:00",
    "schedule_day_of_week": "0",
    "schedule_timezone": "UTC",
}
ACTIONS = {"pause": services.pause, "resume": services.resume, "cancel": services.cancel}


def _source(request, data: dict) -> dict:
    """The run or the registered model the dialog schedules, checked for the user (404 otherwise)."""
    if data.get("source_training_run_id"):
        run = run_for_user(request.user, _int(data["source_training_run_id"]), "registered_model")
        return {"run": run, "model": run.registered_model, "project": run.project, "label": str(run)}
    if data.get("registered_model_id"):
        model = object_for_user(RegisteredModel, request.user, _int(data["registered_model_id"]))
        return {"run": None, "model": model, "project": model.project, "label": model.name}
    raise Http404("Nothing to schedule")


def _int(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= MAX_ID:
        raise Http404("Nothing to schedule")
    return number


def _form_data(post) -> dict:
    """The posted dialog as the API's body: an hourly schedule's minute pill is its schedule_time."""
    data = nested(post)
    if data.get("schedule_type") == timing.HOURLY:  # anything but a pill's value is the schema's to refuse
        data["schedule_time"] = f"00:{str(data.get('schedule_minute') or '0'):0>2}"
    data.pop("schedule_minute", None)
    return data


def _dialog(request, source: dict, data: dict, errors: FieldErrors | None = None, editing=None):
    """The whole dialog (to open), or only its form with the refusal (the answer to a refused save)."""
    existing = services.existing_schedule(source["model"]) if source["model"] else None
    return render(
        request,
        "schedules/_dialog_form.html" if errors else "schedules/_dialog.html",
        {
            "source": source,
            "existing": existing,
            "data": {**DEFAULTS, **data},
            "errors": errors or FieldErrors(),
            "types": timing.TYPES,
            "minutes": timing.HOURLY_MINUTES,
            "weekdays": list(enumerate(timing.WEEKDAYS)),
            "month_days": range(1, 32),
            "short_days": timing.SHORT_MONTH_DAYS,
            "short_note": timing.SHORT_MONTHS_NOTE,
            "zones": timing.zone_names(),
            "on_blessed": OnBlessed.choices,
            "overlap": OverlapPolicy.choices,
            "editing": editing,
        },
    )


def schedule_dialog(request):
    """GET: the empty dialog for ``?run=`` or ``?model=``; POST: create, or the dialog with the refusal."""
    if request.method != "POST":
        query = {"source_training_run_id": request.GET.get("run"), "registered_model_id": request.GET.get("model")}
        source = _source(request, query)
        name = f"{source['model'].name if source['model'] else source['run'].name} retraining"
        return _dialog(request, source, {**{k: v for k, v in query.items() if v}, "name": name})
    data = _form_data(request.POST)
    source = _source(request, data)
    try:
        payload = checked(ScheduleCreateIn, data)
        if source["run"] is not None:
            schedule = services.create_from_run(source["run"], request.user, payload.fields())
        else:
            schedule = services.create_for_model(source["model"], request.user, payload.fields())
    except REFUSALS as error:
        return _dialog(request, source, data, FieldErrors.of(refusal(error)))
    audit.record(request, audit.Action.SCHEDULE_CREATE, schedule, changes=payload.model_dump(mode="json"))
    url = reverse("schedule", args=[schedule.pk])
    if is_htmx(request):
        return HttpResponse(status=204, headers={"HX-Redirect": url})
    return redirect(url)


def _as_form(schedule) -> dict:
    """A saved schedule as the dialog's fields (times as the zone's wall clock)."""
    once = schedule.recurrence().once_at
    return {
        "name": schedule.name,
        "description": schedule.description,
        "schedule_type": schedule.schedule_type,
        "schedule_time": f"{schedule.schedule_time:%H:%M}" if schedule.schedule_time else DEFAULTS["schedule_time"],
        "schedule_minute": str(schedule.schedule_time.minute) if schedule.schedule_time else "0",
        "schedule_day_of_week": str(schedule.schedule_day_of_week or 0),
        "schedule_day_of_month": str(schedule.schedule_day_of_month or 1),
        "scheduled_datetime": f"{once:%Y-%m-%dT%H:%M}" if once else "",
        "schedule_timezone": schedule.schedule_timezone,
        "on_blessed": schedule.on_blessed,
        "overlap_policy": schedule.overlap_policy,
        "max_consecutive_failures": str(schedule.max_consecutive_failures),
    }


def edit_dialog(request, schedule_id: int):
    """GET: the dialog filled with the schedule's fields; POST: save (the API's PATCH), or show the refusal."""
    schedule = schedules_api.schedule_for_user(request.user, schedule_id)
    source = {
        "run": None,
        "model": schedule.registered_model,
        "project": schedule.project,
        "label": schedule.registered_model.name,
    }
    if request.method != "POST":
        return _dialog(request, source, _as_form(schedule), editing=schedule)
    data = _form_data(request.POST)
    try:
        payload = checked(ScheduleIn, data)
        schedule = services.update(schedule, payload.fields())
    except REFUSALS as error:
        return _dialog(request, source, data, FieldErrors.of(refusal(error)), editing=schedule)
    audit.record(request, audit.Action.SCHEDULE_UPDATE, schedule, changes=payload.model_dump(mode="json"))
    url = reverse("schedule", args=[schedule.pk])
    return HttpResponse(status=204, headers={"HX-Redirect": url}) if is_htmx(request) else redirect(url)


def next_runs(request):
    """The dialog's live panel: the next 5 fire times of what the form says now, or why there are none."""
    data = _form_data(request.GET)
    try:
        timing_in = checked(TimingIn, {k: v for k, v in data.items() if k in TimingIn.model_fields})
        preview = services.preview(services.ScheduleFields(name="", **timing_in.model_dump()))
    except REFUSALS as error:
        return render(request, "schedules/_next_runs.html", {"errors": FieldErrors.of(refusal(error))})
    return render(request, "schedules/_next_runs.html", {"preview": preview})


def schedule_page(request, schedule_id: int):
    schedule = schedules_api.schedule_for_user(request.user, schedule_id)
    return render(request, "schedules/schedule_page.html", _page_context(schedule))


def _page_context(schedule, problem: str = "") -> dict:
    runs = presenters.history(schedule)
    return {
        "project": schedule.project,
        "nav_section": "models",
        "schedule": schedule,
        "out": presenters.schedule_out(schedule),
        "runs": runs,
        "chart": presenters.trend_chart(runs),
        "problem": problem,
        "history": audit.history(schedule),
        "targets": list(schedule.notification_targets.all()),
        "project_targets": list(schedule.project.notification_targets.all()),
        "deliveries": list(schedule.deliveries.select_related("target")[:20]),
        "notify_events": NotifyEvent.choices,
    }


@require_POST
def schedule_action(request, schedule_id: int, action: str):
    """pause / resume / cancel / trigger / delete, as the API does them (audit record included)."""
    schedule = schedules_api.schedule_for_user(request.user, schedule_id)
    try:
        if action == "delete":
            models_url = reverse("models", args=[schedule.project_id])
            with audit.recording(request, audit.Action.SCHEDULE_DELETE, schedule):
                services.delete(schedule)
            return redirect(models_url)
        if action in ("notify", "stop-notifying"):
            changes = notification_pages.target_action(schedule, action, request.POST)
        elif action == "trigger":
            services.check_triggerable(schedule)
            firing = scheduler.trigger_now(schedule, request.user)
            changes = {"triggered": firing.run_id, "firing": firing.status}
        elif action in ACTIONS:
            ACTIONS[action](schedule)
            changes = {"status": schedule.status}
        else:
            raise Http404("No such action")
    except (Conflict, Invalid) as refused:
        schedule.refresh_from_db()
        message = "; ".join(f"{p.field}: {p.message}" for p in refused.problems) or refused.message
        status = 409 if isinstance(refused, Conflict) else 422
        return render(request, "schedules/schedule_page.html", _page_context(schedule, message), status=status)
    audit.record(request, audit.Action.SCHEDULE_UPDATE, schedule, changes=changes)
    return redirect("schedule", schedule_id=schedule.pk)
