"""The Training and Experiments pages: run cards with their live stage bar, their actions, and a run's page.

Thin views over what the API uses: the cards are ``presenters.run_page``'s items (their ``actions`` are the
rules the actions' endpoints refuse with), an action is the API's own route function or shared route
(audit trail included), and a refusal is the API's message, shown as a toast. One partial renders each
thing in its page and as the answer to a poll or an action: the list (``_run_list.html``, polled while a
card on it is still running) and the card (``_run_card.html``, the answer to its actions).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ml_pipeline.errors import ConfigError
from ml_pipeline.spec import STAGES
from ml_platform.api import DOMAIN_STATUS
from ml_platform.core.errors import DomainError
from ml_platform.core.forms import checked, nested
from ml_platform.core.partials import is_htmx
from ml_platform.deployment import api as deployment_api
from ml_platform.experiments import services as experiment_services
from ml_platform.projects.access import project_for_user
from ml_platform.registry import api as registry_api
from ml_platform.training import api as training_api
from ml_platform.training import plans, presenters, routes, view
from ml_platform.training.access import run_for_user
from ml_platform.training.models import TrainingRun
from ml_platform.training.schemas import RerunIn

PAGE_SIZE = 10
POLL_SECONDS = 2
FILTERS = ("status", "model_type", "dataset_id", "search")
KINDS = {
    TrainingRun.TRAINING: {"section": "training", "title": "Training runs", "url": "training"},
    TrainingRun.EXPERIMENT: {"section": "experiments", "title": "Experiments", "url": "experiments"},
}


def training_page(request, project_id: int):
    return _runs_page(request, project_id, TrainingRun.TRAINING)


def experiments_page(request, project_id: int):
    return _runs_page(request, project_id, TrainingRun.EXPERIMENT)


def _runs_page(request, project_id: int, kind: str):
    """A project's runs of ``kind`` as cards, filtered and paged by the URL's query (the list alone for htmx)."""
    project = project_for_user(request.user, project_id)
    listing = run_listing(request, project, kind)
    if is_htmx(request):
        return render(request, "training/_run_list.html", {**listing, "project": project})
    return render(
        request,
        "training/runs_page.html",
        {
            **listing,
            "project": project,
            "nav_section": KINDS[kind]["section"],
            "title": KINDS[kind]["title"],
            "datasets": project.datasets.order_by("name").only("id", "name"),
            **best_context(request, project),
            "statuses": presenters.STATUSES,
            "model_types": presenters.MODEL_TYPES,
        },
    )


def run_listing(request, project, kind: str) -> dict:
    """One page of cards as the API lists them, with the filters, the pages' links and whether to poll."""
    chosen = {name: request.GET.get(name, "").strip() for name in FILTERS}
    problem = None
    try:
        dataset_id = int(chosen["dataset_id"]) if chosen["dataset_id"] else None
        page = max(1, int(request.GET.get("page") or 1))
        found = presenters.filtered_runs(
            project,
            kind,
            status=chosen["status"] or None,
            model_type=chosen["model_type"] or None,
            dataset_id=dataset_id,
            search=chosen["search"] or None,
        )
        listed = presenters.run_page(found, page, PAGE_SIZE)
    except ConfigError as error:  # an unknown status or model type (a ValueError too: first)
        problem, page, listed = "; ".join(str(p) for p in error.problems), 1, _empty()
    except ValueError:
        problem, page, listed = "page and dataset_id are numbers", 1, _empty()
    pages = max(1, -(-listed["count"] // PAGE_SIZE))
    base = reverse(KINDS[kind]["url"], args=[project.id])
    kept = {name: value for name, value in chosen.items() if value}

    def page_url(number: int) -> str:
        return f"{base}?{urlencode({**kept, 'page': number})}"

    return {
        "kind": kind,
        "runs": listed["results"],
        "count": listed["count"],
        "page": page,
        "pages": pages,
        "previous_url": page_url(page - 1) if page > 1 else None,
        "next_url": page_url(page + 1) if page < pages else None,
        "list_url": f"{base}?{urlencode({**kept, 'page': page})}",
        "chosen": chosen,
        "problem": problem,
        "polling": any(run["status"] not in TrainingRun.TERMINAL for run in listed["results"]),
        "poll_seconds": POLL_SECONDS,
    }


def _empty() -> dict:
    return {"count": 0, "page": 1, "page_size": PAGE_SIZE, "results": []}


def card_of(run_id: int) -> dict:
    """The run's card, as the list shows it."""
    return presenters.run_page(TrainingRun.objects.filter(pk=run_id), 1, 1)["results"][0]


def run_card(request, run_id: int):
    """One card (the answer to an action, and to a card that asks again)."""
    run = run_for_user(request.user, run_id, kind=None)
    return render(request, "training/_run_card.html", {"run": card_of(run.pk), "project": run.project})


def run_page(request, run_id: int):
    """A run's page: the view modal's header and every tab's partial (its no-JS and deep-link fallback)."""
    run = run_for_user(request.user, run_id, *presenters.DETAIL_RELATED, kind=None)
    section = KINDS[run.kind]
    context = view.view_context(run, split=request.GET.get("split"), stage=request.GET.get("stage"))
    context.update(nav_section=section["section"], section=section)
    return render(request, "training/run_page.html", context)


# --------------------------------------------------------------------------- actions

RERUN_EDITS = ("training_params.epochs", "training_params.batch_size", "training_params.learning_rate")


def rerun_form(request, run_id: int):
    """The rerun's choices: as it was, or from a stage with edited training parameters; the stage chooser says
    what the runner's plan would reuse from the cache (training/plans.py)."""
    run = run_for_user(request.user, run_id, kind=None)
    from_stage = request.GET.get("from_stage") or ""
    try:
        plan, plan_problem = plans.rerun_plan(run, from_stage), None
    except (ConfigError, DomainError, ValueError) as error:
        plan, plan_problem = [], str(error)
    return render(
        request,
        "training/_rerun_form.html",
        {
            "run": run,
            "from_stage": from_stage,
            "stages": [s for s in STAGES if s in (run.spec or {}).get("stages", STAGES)],
            "plan": plan,
            "plan_problem": plan_problem,
            "training_params": run.training_params,
        },
    )


def rerun_payload(run: TrainingRun, form) -> RerunIn | None:
    """The rerun form's choice as the API's body: None (as it was), or from a stage with the training
    parameters the form edits merged over the run's (the API replaces a section whole)."""
    if form.get("mode") != "edited":
        return None
    data = nested(form)
    edited = {k: v for k, v in (data.get("training_params") or {}).items() if v not in ("", None)}
    body = {"training_params": {**run.training_params, **edited}} if edited else {}
    if data.get("from_stage"):
        body["from_stage"] = data["from_stage"]
    return checked(RerunIn, body)


DONE = {
    "cancel": "Cancel requested for {run}",
    "cancelled": "{run} cancelled",
    "rerun": "{new} queued (a rerun of {run})",
    "delete": "{run} deleted",
    "push": "{run} registered as version {version}",
    "deploy": "{run} is being deployed{target}: it serves once loaded",
}


def _toast(response: HttpResponse, message: str, level: str = "success", changed: bool = False) -> HttpResponse:
    events = {"toast": {"level": level, "message": message}}
    if changed:
        events["runs-changed"] = True
    response["HX-Trigger"] = json.dumps(events)
    return response


@require_POST
def run_action(request, run_id: int, action: str):
    """Cancel, rerun (as it was), delete, push or deploy a run, through the API's own routes; the card as it
    is now, and a toast (the API's message when it refused)."""
    run = run_for_user(request.user, run_id, "registered_model", kind=None)
    name = str(run)
    try:
        if action == "cancel":
            routes.cancel(request, run)
        elif action == "rerun":
            new = routes.rerun(request, run, rerun_payload(run, request.POST))
        elif action == "delete":
            routes.delete(request, run)
            return _toast(HttpResponse(""), DONE["delete"].format(run=name), changed=True)
        elif action == "push":
            registry_api.push_training_run(request, run.pk)
        elif action == "deploy":
            target = request.POST.get("target") or "local"  # the Overview's Deploy to Vertex AI / Cloud Run
            deployment_api.deploy_training_run(request, run.pk, deployment_api.DeployRunIn(target=target[:20]))
        else:
            return _toast(HttpResponse(status=404), f"No action '{action}'", "error")
    except DomainError as error:
        status = next((code for kind, code in DOMAIN_STATUS.items() if isinstance(error, kind)), 400)
        shown = "; ".join(str(p) for p in error.problems) or error.message  # a refused field says which
        return _toast(HttpResponse(status=status), shown, "error")
    except ConfigError as error:
        return _toast(HttpResponse(status=422), "; ".join(str(p) for p in error.problems), "error")
    if action == "rerun" and request.POST.get("_form"):  # from the rerun form, in the wizard's dialog
        response = _toast(HttpResponse(""), DONE["rerun"].format(run=name, new=str(new)), changed=True)
        events = json.loads(response["HX-Trigger"])
        response["HX-Trigger"] = json.dumps({**events, "wizard-done": True})
        return response
    card = card_of(run.pk)
    done = "cancelled" if action == "cancel" and card["status"] == TrainingRun.CANCELLED else action
    where = f" to {view.target_label(request.POST.get('target'))}" if request.POST.get("target") else ""
    message = DONE[done].format(
        run=name, new=str(new) if action == "rerun" else "", version=card["registry_version"], target=where
    )
    response = render(request, "training/_run_card.html", {"run": card, "project": run.project})
    return _toast(response, message, changed=action == "rerun")


# --------------------------------------------------------------------------- best experiments


def best_experiments(request, project_id: int):
    """The Best Experiments box: a KPI row per model type and the selected one's top configurations, as
    ``GET /projects/{id}/experiments/best/`` ranks them (of one dataset's experiments when one is chosen)."""
    project = project_for_user(request.user, project_id)
    return render(request, "training/_best_experiments.html", best_context(request, project))


def best_context(request, project) -> dict:
    try:
        dataset_id = int(request.GET["best_dataset"]) if request.GET.get("best_dataset") else None
    except ValueError:
        dataset_id = None
    rows = experiment_services.best_experiments(project, dataset_id)
    selected = request.GET.get("best_type") or "retrieval"
    return {
        "project": project,
        "best_rows": rows,
        "best_type": selected,
        "best_selected": next((r for r in rows if r["model_type"] == selected), rows[0]),
        "best_dataset": dataset_id,
        "best_datasets": project.datasets.order_by("name").only("id", "name"),
        "best_split": "eval",  # shown where a KPI names no split: experiments are ranked on the Trainer's eval split
    }


# --------------------------------------------------------------------------- compare


def compare_page(request):
    """Runs or experiments side by side (``?ids=1&ids=2`` from the cards' checkboxes, or ``?ids=1,2``), as
    ``GET /api/training-runs/compare/`` answers: configs with differences marked, final metrics with the best
    one marked, learning curves overlaid (Chart.js)."""
    ids = ",".join(part for value in request.GET.getlist("ids") for part in value.split(",") if part.strip())
    try:
        compared, problem = training_api.compare_runs(request, ids=ids), None
    except ConfigError as error:
        compared, problem = None, "; ".join(str(p) for p in error.problems)
    project = None
    if compared:
        project = run_for_user(request.user, compared["runs"][0]["id"], kind=None).project
    return render(
        request,
        "training/compare_page.html",
        {"compared": compared, "problem": problem, "project": project, "nav_section": "training"},
        status=200 if compared else 422,
    )
