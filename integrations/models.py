"""An account's link to its PSA, and the integration log of everything done on it."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from hub.models import Account, Tenant
from hub.tenancy import AccountScopedManager

VENDOR_CHOICES = [("connectwise", "ConnectWise Manage"), ("autotask", "Autotask"), ("halo", "Halo PSA")]


class Connection(models.Model):
    """One PSA connection per account. Credentials are one encrypted bundle (hub.vault)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Not verified yet"
        VERIFYING = "verifying", "Verifying…"
        CONNECTED = "connected", "Connected"
        FAILED = "failed", "Failed"

    # A UUID made before saving, so the bundle can be bound to its row at encryption time.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="connection")
    vendor = models.CharField(max_length=16, choices=VENDOR_CHOICES)
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

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="integration_logs")
    connection = models.ForeignKey(Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="logs")
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="logs")
    action = models.CharField(max_length=64)  # e.g. connection.verify, ticket.create, billing.sync
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.OK)
    message = models.TextField(blank=True)
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
        indexes = [
            # Newest first per account, with the id as keyset tie-breaker.
            models.Index(fields=["account", "-created_at", "-id"], name="log_account_created"),
            models.Index(fields=["account", "action", "-created_at"], name="log_account_action"),
            models.Index(fields=["account", "outcome", "-created_at"], name="log_account_outcome"),
            models.Index(fields=["account", "tenant", "-created_at"], name="log_account_tenant"),
            models.Index(fields=["correlation_id"], name="log_correlation"),
            models.Index(fields=["account", "subject", "-created_at"], name="log_account_subject"),
            models.Index(fields=["created_at"], name="log_created"),  # retention sweeps
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.outcome}: {self.message[:60]}"


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
