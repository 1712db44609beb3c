"""The Models page (the registry): registered models with their KPI counts, and a versions drawer per model
with its deployment, its history and the Deploy / Undeploy / Rollback / Try it actions.

Thin views over the registry and deployment APIs' own route functions (audit trail included), so the page
shows what ``GET /projects/{id}/registered-models/`` and ``/registered-models/{id}/deployment/`` answer.
One partial renders a model's drawer in the page and as the answer to its actions.
"""

from __future__ import annotations

import json

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from ml_pipeline.errors import ConfigError
from ml_platform.api import DOMAIN_STATUS
from ml_platform.core.errors import DomainError
from ml_platform.deployment import api as deployment_api
from ml_platform.projects.access import project_for_user
from ml_platform.registry import api as registry_api

# The actions are carried out by the worker: the toast says what was asked, the drawer shows it loading.
DONE = {
    "deploy": "Deploying version {version} of {name}: it serves once loaded",
    "undeploy": "Undeploying {name}",
    "rollback": "Rolling {name} back to version {version}",
}


def models_page(request, project_id: int):
    project = project_for_user(request.user, project_id)
    chosen = {name: request.GET.get(name, "").strip() for name in ("model_type", "has_schedule")}
    has_schedule = {"yes": True, "no": False}.get(chosen["has_schedule"])
    problem, listed = None, {"results": [], "kpi": {"total": 0, "registered": 0, "with_schedule": 0, "deployed": 0}}
    try:
        listed = registry_api.list_registered_models(
            request,
            project.id,
            model_type=chosen["model_type"] or None,
            has_schedule=has_schedule,
            search=None,
            page=1,
            page_size=200,
        )
    except ConfigError as error:
        problem = "; ".join(str(p) for p in error.problems)
    return render(
        request,
        "registry/models_page.html",
        {
            "project": project,
            "nav_section": "models",
            "models": listed["results"],
            "kpi": listed["kpi"],
            "chosen": chosen,
            "problem": problem,
            "model_types": registry_api.MODEL_TYPES,
        },
    )


def drawer_context(request, registered_id: int) -> dict:
    model = registry_api.get_registered_model(request, registered_id)
    deployment = deployment_api.get_deployment(request, registered_id)
    versions = model["versions"]
    for newer, older in zip(versions, versions[1:] + [None]):
        newer["deltas"] = _deltas(newer["final_metrics"], older["final_metrics"] if older else {})
    return {"model": model, "deployment": deployment, "versions": versions}


# The metrics a version row shows (the experiments' KPIs), in this order.
VERSION_METRICS = ("recall_at_10", "recall_at_50", "recall_at_100", "rmse", "mae")


def _deltas(metrics: dict, previous: dict) -> list[dict]:
    """Each headline metric with its change against the previous version (None for the first one)."""
    shown = []
    for name in VERSION_METRICS:
        value = metrics.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        before = previous.get(name)
        delta = value - before if isinstance(before, (int, float)) and not isinstance(before, bool) else None
        shown.append({"name": name, "value": value, "delta": delta})
    return shown


def model_drawer(request, registered_id: int):
    context = drawer_context(request, registered_id)
    response = render(request, "registry/_model_drawer.html", context)
    if request.GET.get("polling") and not context["deployment"]["pending"]:
        response["HX-Trigger"] = json.dumps({"models-changed": True})  # the worker finished: the table follows
    return response


@require_POST
def model_action(request, registered_id: int, action: str):
    """Deploy a version, undeploy or roll back, through the deployment API's routes; the drawer and a toast."""
    try:
        if action == "deploy":
            version = int(request.POST.get("version", ""))
            state = deployment_api.deploy(request, registered_id, deployment_api.DeployIn(version=version))
        elif action == "undeploy":
            state = deployment_api.undeploy(request, registered_id)
        elif action == "rollback":
            state = deployment_api.rollback(request, registered_id)
        else:
            return _toast(HttpResponse(status=404), f"No action '{action}'", "error")
    except DomainError as error:
        status = next((code for kind, code in DOMAIN_STATUS.items() if isinstance(error, kind)), 400)
        return _toast(HttpResponse(status=status), error.message, "error")
    except ValueError:
        return _toast(HttpResponse(status=422), "version: a version number is required", "error")
    response = render(request, "registry/_model_drawer.html", drawer_context(request, registered_id))
    name = state["registered_model_name"]
    version = (state.get("pending") or {}).get("version") or state["version"]
    return _toast(response, DONE[action].format(name=name, version=version), changed=True)


def try_it(request, registered_id: int):
    """The Try it box's answer: the deployed model's products for a buyer, or why there are none."""
    buyer_id = request.GET.get("buyer_id", "").strip()
    try:
        k = int(request.GET.get("k") or 10)
        answer = deployment_api.recommend(request, registered_id, buyer_id=buyer_id, k=k) if buyer_id else None
        error = None if buyer_id else "buyer_id: enter a buyer id"
    except ValueError:
        answer, error = None, "k: a whole number"
    except DomainError as refused:
        answer, error = None, "; ".join(str(p) for p in refused.problems) or refused.message
    return render(request, "registry/_try_it_result.html", {"answer": answer, "error": error})


def _toast(response: HttpResponse, message: str, level: str = "success", changed: bool = False) -> HttpResponse:
    events = {"toast": {"level": level, "message": message}}
    if changed:
        events["models-changed"] = True
    response["HX-Trigger"] = json.dumps(events)
    return response
