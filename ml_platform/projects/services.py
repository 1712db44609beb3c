from django.contrib.auth import get_user_model
from django.db import transaction

from ml_platform.core.errors import ApiError
from ml_platform.projects.models import Membership, Project
from ml_pipeline.errors import Problem


def create_project(user, name: str, description: str = "") -> Project:
    if Project.objects.filter(name=name).exists():
        raise ApiError(409, "Name taken", [Problem("name", f"a project named '{name}' already exists")])
    with transaction.atomic():
        project = Project(name=name, description=description, created_by=user)
        project.full_clean()
        project.save()
        Membership.objects.create(project=project, user=user, role=Membership.OWNER)
    return project


def add_member(project: Project, username: str, role: str) -> Membership:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ApiError(422, "Invalid member", [Problem("username", f"no user named '{username}'")])
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership
