import hashlib
import secrets

from django.conf import settings
from django.db import models

from ml_platform.core import clock

TOKEN_PREFIX = "mlp_"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenManager(models.Manager):
    def issue(self, user, name: str) -> tuple["ApiToken", str]:
        """Create a token and return it with its raw value, which is shown once and never stored."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = self.create(user=user, name=name, prefix=raw[:10], key_hash=hash_token(raw))
        return token, raw

    def authenticate(self, raw: str):
        """The active user owning this raw token, or None."""
        token = self.authenticate_token(raw)
        return token.user if token is not None else None

    def authenticate_token(self, raw: str) -> "ApiToken | None":
        """The token with this raw value, if its user is active (its ``user`` loaded), or None."""
        token = self.select_related("user").filter(key_hash=hash_token(raw)).first()
        if token is None or not token.user.is_active:
            return None
        # Cheap write-skipping: record use at most once a minute per token.
        now = clock.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 is stored; ``prefix`` lets a user tell tokens apart."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenManager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
