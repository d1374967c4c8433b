"""The core: accounts (MSP workspaces), who belongs to them, their tenants and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from django.conf import settings
from django.core.validators import MinLengthValidator
from django.db import models
from django.utils import timezone

from hub.tenancy import ADMIN, ROLE_CHOICES, AccountScopedManager

EXTERNAL_ID_MAX = 200


class Account(models.Model):
    """One MSP's workspace: it owns users' memberships, API keys, the PSA connection and data."""

    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Amsterdam")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=ROLE_CHOICES, default=ADMIN)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AccountScopedManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "account"], name="membership_unique_user_account")]

    def __str__(self) -> str:
        return f"{self.user} in {self.account} ({self.role})"


class Tenant(models.Model):
    """One of the MSP's customers, identified by the host product's external id."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="tenants")
    name = models.CharField(max_length=200)
    external_id = models.CharField(max_length=EXTERNAL_ID_MAX, validators=[MinLengthValidator(1)])
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountScopedManager()

    class Meta:
        ordering = ["name", "external_id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "external_id"], name="tenant_unique_external_id_per_account")
        ]
        indexes = [models.Index(fields=["account", "name"])]

    def __str__(self) -> str:
        return self.name


class ApiKeyQuerySet(models.QuerySet):
    def for_account(self, account):
        return self.filter(account=account)

    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A key a host product uses for the REST API. Only a hash of the secret is stored."""

    PREFIX = "hub_"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=ROLE_CHOICES, default=ADMIN)
    # The public part: shown in lists and used to find the row without trying every hash.
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def _hash(secret: str) -> str:
        # The secret is 32 random bytes, so a fast hash is enough: nothing to brute-force.
        return hashlib.sha256(secret.encode()).hexdigest()

    @classmethod
    def issue(cls, *, account: Account, name: str, role: str = ADMIN, created_by=None) -> tuple[ApiKey, str]:
        """Create a key; the returned full key is shown once and never again."""
        prefix = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        key = cls.objects.create(
            account=account, name=name, role=role, prefix=prefix, secret_hash=cls._hash(secret), created_by=created_by
        )
        return key, f"{cls.PREFIX}{prefix}_{secret}"

    @classmethod
    def parse(cls, presented: str) -> tuple[str, str] | None:
        if not presented.startswith(cls.PREFIX):
            return None
        prefix, sep, secret = presented[len(cls.PREFIX) :].partition("_")
        if not sep or len(prefix) != 8 or not secret:
            return None
        return prefix, secret

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.secret_hash, self._hash(secret))

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class WorkerPing(models.Model):
    """A round trip through the broker: the page asks, a worker answers (System status)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requested_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    answered_by = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, default="ping", choices=[("ping", "Ping"), ("heartbeat", "Heartbeat")])

    class Meta:
        ordering = ["-requested_at"]
        indexes = [models.Index(fields=["kind", "-answered_at"])]
