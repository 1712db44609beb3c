from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from ml_pipeline.errors import Problem
from ml_platform.core.errors import Conflict, Invalid
from ml_platform.projects.models import Membership, Project


def _name_taken(name: str) -> Conflict:
    return Conflict("Name taken", [Problem("name", f"you already have a project named '{name}'")])


def create_project(user, name: str, description: str = "") -> Project:
    """A new project owned by ``user``. Names are unique per owner: another user's project never answers here."""
    if Project.objects.filter(created_by=user, name=name).exists():
        raise _name_taken(name)
    project = Project(name=name, description=description, created_by=user)
    project.full_clean(validate_constraints=False)  # the constraint is the database's (a race lands below)
    try:
        with transaction.atomic():
            project.save()
            Membership.objects.create(project=project, user=user, role=Membership.OWNER)
    except IntegrityError:
        raise _name_taken(name) from None
    return project


def add_member(project: Project, username: str, role: str) -> Membership:
    """Add a member or change their role; the project keeps at least one owner (409 naming ``role``)."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise Invalid(Problem("username", f"no user named '{username}'"), "Invalid member")
    with transaction.atomic():
        # The project's row lock makes one project's membership changes take turns, so two owners
        # demoting themselves at once cannot each count the other as the owner who remains.
        Project.objects.select_for_update().get(pk=project.pk)
        if role != Membership.OWNER:
            owners = set(
                Membership.objects.filter(project=project, role=Membership.OWNER).values_list("user_id", flat=True)
            )
            if owners == {user.pk}:
                raise Conflict(
                    "A project needs an owner",
                    [Problem("role", f"'{username}' is the project's only owner; make another member an owner first")],
                )
        membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership
