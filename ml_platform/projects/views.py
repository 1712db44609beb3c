from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from ml_platform.audit import services as audit
from ml_platform.core.errors import DomainError
from ml_platform.modeling import services as modeling_services
from ml_platform.projects import services
from ml_platform.projects.access import project_for_user
from ml_platform.projects.models import Project


@require_http_methods(["GET", "POST"])
def home(request):
    """The user's projects, and a form to start a new one."""
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        try:
            project = services.create_project(request.user, name, request.POST.get("description", ""))
        except DomainError as error:
            messages.error(request, "; ".join(str(p) for p in error.problems) or error.message)
        except Exception as error:  # django ValidationError from full_clean
            messages.error(request, f"name: {'; '.join(getattr(error, 'messages', [str(error)]))}")
        else:
            audit.record(
                request,
                audit.Action.CREATE,
                project,
                changes={"name": project.name, "description": project.description},
            )
            return redirect("project", project_id=project.id)
    projects = Project.objects.for_user(request.user).prefetch_related("datasets")
    return render(request, "projects/home.html", {"projects": projects})


def project_detail(request, project_id: int):
    """The project's catalog (``?q=`` narrows every list to names containing it), uploads and history.

    htmx's search asks the same URL and swaps in the lists alone (the #catalog part of the page).
    """
    project = project_for_user(request.user, project_id)
    query = request.GET.get("q", "").strip()
    named = {"name__icontains": query} if query else {}
    model_configs = [
        {"config": mc, "counts": modeling_services.parameter_counts(mc)}
        for mc in project.model_configs.select_related("feature_config").filter(**named)
    ]
    return render(
        request,
        "projects/detail.html",
        {
            "project": project,
            "query": query,
            "datasets": project.datasets.filter(**named),
            "feature_configs": [
                {"config": fc, "breakdown": modeling_services.breakdown(fc)}
                for fc in project.feature_configs.select_related("dataset").filter(**named)
            ],
            "model_configs": model_configs,
            "uploads": project.uploads.filter(**({"original_name__icontains": query} if query else {})),
            "history": audit.history(project),
        },
    )
