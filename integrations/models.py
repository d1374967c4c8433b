"""An account's link to its PSA, and the integration log of everything done on it."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from hub.models import Account, Tenant
from hub.tenancy import AccountScopedManager
from integrations import registry


class Connection(models.Model):
    """One PSA connection per account. Credentials are one encrypted bundle (hub.vault)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Not verified yet"
        VERIFYING = "verifying", "Verifying…"
        CONNECTED = "connected", "Connected"
        FAILED = "failed", "Failed"

    class Health(models.TextChoices):
        HEALTHY = "healthy", "Healthy"
        DEGRADED = "degraded", "Degraded"
        BROKEN = "broken", "Broken"
        CREDENTIALS_REJECTED = "credentials_rejected", "Credentials rejected"

    # A UUID made before saving, so the bundle can be bound to its row at encryption time.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="connection")
    vendor = models.CharField(max_length=16, choices=registry.choices)  # a callable: a new PSA needs no migration
    # Values that may be shown (site, company id, discovered zone or codebase...).
    config = models.JSONField(default=dict, blank=True)
    # Never rendered, serialised or logged; only integrations.services.load_credentials decrypts.
    credentials = models.TextField(blank=True, editable=False)
    credentials_key_id = models.CharField(max_length=32, blank=True, db_index=True, editable=False)
    credentials_updated_at = models.DateTimeField(null=True, blank=True)
    # Names (never values) of the secret fields that are stored, to show "set / not set".
    secrets_set = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    last_error = models.TextField(blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    paused = models.BooleanField(default=False)
    billing_paused = models.BooleanField(default=False)
    # The last "Check permissions" result: [{key, label, feature, ok, message, fix}, ...].
    permission_report = models.JSONField(default=list, blank=True)
    permissions_checked_at = models.DateTimeField(null=True, blank=True)
    companies_imported_at = models.DateTimeField(null=True, blank=True)
    # Health (integrations.health): the state, since when, and what put it there. Moving into
    # Broken or Credentials rejected e-mails the admins once; back to Healthy says so.
    health_state = models.CharField(max_length=24, choices=Health.choices, default=Health.HEALTHY)
    health_since = models.DateTimeField(null=True, blank=True)
    health_error = models.TextField(blank=True)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    # What the admins were last e-mailed about (broken, credentials_rejected, healthy or "").
    health_notified = models.CharField(max_length=24, blank=True)
    # When the PSA says the credential stops working (VerifyResult.credential_expires_at).
    credential_expires_at = models.DateTimeField(null=True, blank=True)
    # The expiry date the admins were last warned about: one e-mail per expiry date.
    expiry_warned_for = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountScopedManager()

    def __str__(self) -> str:
        return f"{self.get_vendor_display()} for {self.account}"


class IntegrationLog(models.Model):
    """Append-only: one row per action the hub took (or tried) and per PSA request it made.

    Rows of one action share a correlation id, which ties together the API call that caused
    it, the task and its retries, and each PSA request (method, path, status, duration and
    redacted excerpts).
    """

    class Outcome(models.TextChoices):
        OK = "ok", "OK"
        ERROR = "error", "Error"
        SKIPPED = "skipped", "Skipped"

    # No index of its own: every index below starts with the account.
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="integration_logs", db_index=False)
    connection = models.ForeignKey(Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="logs")
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="logs")
    action = models.CharField(max_length=64)  # e.g. connection.verify, ticket.create, billing.sync
    # The part of `action` before the first dot (connection, ticket, billing, import, webhook,
    # mapping...), kept in a column so that the group filter is an indexed equality, not a LIKE.
    action_group = models.CharField(max_length=16, blank=True, editable=False)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.OK)
    message = models.TextField(blank=True)
    # The typed error's kind (integrations.base.errors: auth_failed, permission_missing...) of a
    # failed action; what health states and suggested fixes are decided on.
    error_kind = models.CharField(max_length=24, blank=True)
    http_method = models.CharField(max_length=8, blank=True)
    http_path = models.CharField(max_length=500, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    request_excerpt = models.TextField(blank=True)
    response_excerpt = models.TextField(blank=True)
    correlation_id = models.CharField(max_length=64, blank=True)
    # What the entry is about, for links from the log: "incident:42", "billing_run:7".
    subject = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = AccountScopedManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # The logs page reads newest first with a keyset on (created_at, id): each filter has an
        # index that ends in those two columns, so a page is one short index range scan at any
        # depth (integrations/logs.py; figures in `make bench-logs`). On PostgreSQL a trigram
        # index serves the free-text search (migration 0004).
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="log_account_created"),
            models.Index(fields=["account", "action_group", "-created_at", "-id"], name="log_account_group"),
            models.Index(fields=["account", "outcome", "-created_at", "-id"], name="log_account_outcome"),
            models.Index(fields=["account", "tenant", "-created_at", "-id"], name="log_account_tenant"),
            models.Index(fields=["account", "http_status", "-created_at", "-id"], name="log_account_status"),
            models.Index(fields=["correlation_id"], name="log_correlation"),
            models.Index(fields=["account", "subject", "-created_at"], name="log_account_subject"),
            # Vendor staff reading every account, and retention sweeps.
            models.Index(fields=["-created_at", "-id"], name="log_created"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.outcome}: {self.message[:60]}"

    def save(self, *args, **kwargs):
        if not self.action_group:
            self.action_group = action_group_of(self.action)
        super().save(*args, **kwargs)

    @property
    def is_request(self) -> bool:
        """A row of one PSA request (request_logger), rather than of an action."""
        return bool(self.http_method)


def action_group_of(action: str) -> str:
    """"ticket.create" -> "ticket": what the logs page's action filter matches."""
    return (action or "").split(".", 1)[0][:16]


class PsaCompany(models.Model):
    """A company imported from the PSA ("Import customers"), kept for search and mapping."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="companies")
    company_id = models.CharField(max_length=64)
    name = models.CharField(max_length=255)
    identifier = models.CharField(max_length=255, blank=True)
    active = models.BooleanField(default=True)
    imported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["connection", "company_id"], name="psacompany_unique")]
        indexes = [models.Index(fields=["connection", "name"])]

    def __str__(self) -> str:
        return self.name


class CompanyMapping(models.Model):
    """Which PSA company a tenant is; used by both tickets and billing."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="company_mappings")
    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="company_mapping")
    company_id = models.CharField(max_length=64)
    company_name = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountScopedManager()

    def __str__(self) -> str:
        return f"{self.tenant} → {self.company_name or self.company_id}"


class Picklist(models.Model):
    """A cached PSA list (boards, statuses of a board, priorities...) for the settings pages."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="picklists")
    kind = models.CharField(max_length=32)
    parent_id = models.CharField(max_length=64, blank=True, default="")
    items = models.JSONField(default=list)
    fetched_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    refresh_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "kind", "parent_id"], name="picklist_unique")]

    def __str__(self) -> str:
        return f"{self.kind}({self.parent_id})"
