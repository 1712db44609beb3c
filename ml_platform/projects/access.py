"""Who may see what: every lookup of a project-owned object goes through here.

An object in a project the user is not a member of answers 404, exactly as a
missing one does, so ids cannot be probed.
"""

from django.http import Http404

from ml_platform.core.errors import Forbidden
from ml_platform.projects.models import Membership, Project


def project_for_user(user, project_id: int) -> Project:
    project = Project.objects.for_user(user).filter(pk=project_id).first()
    if project is None:
        raise Http404("No such project")
    return project


def owned_project_for_user(user, project_id: int) -> Project:
    """The project, if the user owns it (403 for plain members, 404 for outsiders)."""
    project = project_for_user(user, project_id)
    if not Membership.objects.filter(project=project, user=user, role=Membership.OWNER).exists():
        raise Forbidden("Only the project's owners may do this")
    return project


def object_for_user(model, user, object_id: int):
    """An object of a project-owned model (it has a ``project`` foreign key), or 404."""
    obj = model.objects.select_related("project").filter(pk=object_id, project__memberships__user=user).first()
    if obj is None:
        raise Http404(f"No such {model._meta.verbose_name}")
    return obj
