from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models


class ProjectQuerySet(models.QuerySet):
    def for_user(self, user):
        """Projects the user is a member of: the only ones they may see."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(memberships__user=user)


class Project(models.Model):
    """One recommender product (the spec's "model endpoint", e.g. b2b-recs); owns everything below it."""

    # Unique per owner (see Meta), not platform-wide: a name taken elsewhere must not tell a
    # non-member that the project exists. ``unique_name`` is what names things outside the database.
    name = models.CharField(
        max_length=100,
        validators=[RegexValidator(r"^[a-z0-9][a-z0-9-]*$", "use lowercase letters, digits and dashes")],
    )
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["created_by", "name"], name="project_name_unique_per_owner")]

    def __str__(self) -> str:
        return self.name

    @property
    def unique_name(self) -> str:
        """The name made unique across the platform (``p12-b2b-recs``), for what every project shares:
        the pipeline root's folders, MLflow's experiments and registered models, the serving endpoint."""
        return f"p{self.pk}-{self.name}"


class Membership(models.Model):
    OWNER = "owner"
    MEMBER = "member"
    ROLES = [(OWNER, "Owner"), (MEMBER, "Member")]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=ROLES, default=MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"
