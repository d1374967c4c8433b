"""Incidents from the host product, and the PSA tickets they become."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from hub.models import Account, Tenant
from hub.tenancy import AccountScopedManager

SEVERITIES = ["Critical", "High", "Medium", "Low"]
STATUSES = ["Open", "Pending", "Done", "Snoozed", "Canceled", "Dismissed"]
# Incident statuses after which the ticket is closed through the mapped status.
CLOSING_STATUSES = {"Done", "Canceled", "Dismissed"}


class TicketingConfig(models.Model):
    """Where and how an account's tickets are made: one board/queue, its status for each
    incident status, a priority for each severity, type, source, defaults (seeds 000–004)."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="ticketing_config")
    vendor = models.CharField(max_length=16)
    # ConnectWise service board / Autotask queue / Halo ticket type.
    board_id = models.CharField(max_length=64, blank=True)
    board_name = models.CharField(max_length=255, blank=True)
    # {"Open": "<status id>", ...} for the six incident statuses; "new" for Autotask's
    # "Status for new tickets" (seed 001) when it differs from Open's.
    status_map = models.JSONField(default=dict, blank=True)
    # {"Critical": "<priority id>", ...}
    priority_map = models.JSONField(default=dict, blank=True)
    default_priority_id = models.CharField(max_length=64, blank=True)
    type_id = models.CharField(max_length=64, blank=True)
    subtype_id = models.CharField(max_length=64, blank=True)
    item_id = models.CharField(max_length=64, blank=True)
    source_id = models.CharField(max_length=64, blank=True)
    team_id = models.CharField(max_length=64, blank=True)
    default_company_id = models.CharField(max_length=64, blank=True)
    default_company_name = models.CharField(max_length=255, blank=True)
    # Vendor-only settings: Autotask issue/sub-issue type, Halo note outcome...
    extra = models.JSONField(default=dict, blank=True)
    # A repeated incident whose ticket closed less than this many hours ago reopens it.
    reopen_within_hours = models.PositiveIntegerField(default=24)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountScopedManager()

    def missing_statuses(self) -> list[str]:
        return [status for status in STATUSES if not self.status_map.get(status)]

    def missing_priorities(self) -> list[str]:
        return [severity for severity in SEVERITIES if not (self.priority_map.get(severity) or self.default_priority_id)]


class Ticket(models.Model):
    """A PSA ticket the hub created (one per incident, or per dedupe key while open)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="tickets")
    vendor = models.CharField(max_length=16)
    reference = models.CharField(max_length=64)  # the marker written into the PSA ticket
    ticket_id = models.CharField(max_length=64)
    number = models.CharField(max_length=64, blank=True)
    url = models.URLField(max_length=500, blank=True)
    board_id = models.CharField(max_length=64, blank=True)
    # The board's status for each incident status when the ticket was made: a later change
    # of board applies to new tickets only (seed 004), and this one keeps following its own.
    status_map = models.JSONField(default=dict, blank=True)
    company_id = models.CharField(max_length=64, blank=True)
    status_id = models.CharField(max_length=64, blank=True)
    priority_id = models.CharField(max_length=64, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # When the PSA last changed the ticket, as of the last change the hub applied from it
    # (two-way sync, ticketing/inbound.py): an older report never overwrites a newer one.
    psa_changed_at = models.DateTimeField(null=True, blank=True)

    objects = AccountScopedManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "reference"], name="ticket_unique_reference"),
        ]

    def __str__(self) -> str:
        return self.number or self.ticket_id


class Incident(models.Model):
    class Sync(models.TextChoices):
        PENDING = "pending", "Waiting to sync"
        SYNCING = "syncing", "Syncing"
        SYNCED = "synced", "Synced"
        NEEDS_MAPPING = "needs_mapping", "Needs mapping"
        HELD = "held", "Held (integration paused)"
        FAILED = "failed", "Failed"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="incidents")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="incidents")
    title = models.CharField(max_length=500)
    details = models.TextField(blank=True)
    severity = models.CharField(max_length=16, choices=[(s, s) for s in SEVERITIES])
    status = models.CharField(max_length=16, choices=[(s, s) for s in STATUSES], default="Open")
    dedupe_key = models.CharField(max_length=255, blank=True)
    contact_email = models.EmailField(blank=True)
    source_url = models.URLField(max_length=1000, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    last_seen_at = models.DateTimeField(default=timezone.now)
    ticket = models.ForeignKey(Ticket, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents")
    sync_state = models.CharField(max_length=16, choices=Sync.choices, default=Sync.PENDING)
    sync_error = models.TextField(blank=True)
    sync_attempts = models.PositiveIntegerField(default=0)
    # Who is delivering it: the Celery task id, so a redelivered task (worker killed) can
    # take its own claim back at once while a second copy cannot run beside it.
    sync_claim = models.CharField(max_length=64, blank=True)
    sync_claimed_at = models.DateTimeField(null=True, blank=True)
    # When the incident last needed syncing: the sweeper re-queues those waiting too long.
    sync_requested_at = models.DateTimeField(default=timezone.now)
    synced_at = models.DateTimeField(null=True, blank=True)
    # Where the last status change came from ("api", "psa", "hub"), so it is not echoed back.
    status_source = models.CharField(max_length=16, default="api")
    status_changed_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountScopedManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="incident_account_created"),
            models.Index(fields=["account", "dedupe_key"], name="incident_dedupe"),
            models.Index(fields=["sync_state", "sync_requested_at"], name="incident_sync_due"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def reference(self) -> str:
        return f"{self.reference_prefix(self.account_id)}{self.pk}"

    @staticmethod
    def reference_prefix(account_id) -> str:
        """What every ticket reference of the account starts with (polls ask for these)."""
        return f"hub-{account_id}-"


class IncidentNote(models.Model):
    """A note for the ticket. `sending_at` is set before the PSA call and `delivered_at`
    after it; a note found "sending" on a retry is looked for in the PSA before it is sent
    again, so a worker killed mid-call never posts it twice."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="notes")
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    sending_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    @property
    def marker(self) -> str:
        return f"[hub note {self.pk}]"

    class Meta:
        ordering = ["created_at", "id"]


# --- two-way status sync (ticketing/sync/) ------------------------------------------------------------


class StatusSync(models.Model):
    """How status changes come back from one connection's PSA: a Halo webhook, a ConnectWise
    callback, or polling (Autotask, or the fallback when neither can be registered).

    Keyed by the connection's id rather than a foreign key: the row outlives the connection for
    as long as it takes to remove the webhook from the PSA. Secrets are stored as SHA-256 hashes
    (they are 256-bit random values, so a fast hash is enough); the plaintext goes to the PSA
    once, at registration, and is never stored or shown.
    """

    class Mode(models.TextChoices):
        NONE = "none", "Not set up"
        WEBHOOK = "webhook", "Webhook"
        CALLBACK = "callback", "Callback"
        POLL = "poll", "Polling"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="status_syncs")
    connection_id = models.UUIDField(unique=True)
    vendor = models.CharField(max_length=16)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.NONE)
    # Why polling is used where a webhook/callback was wanted (shown on the pages).
    fallback_reason = models.TextField(blank=True)
    secret_hash = models.CharField(max_length=64, blank=True)
    remote_id = models.CharField(max_length=64, blank=True)  # Halo webhook GUID / CW callback id
    remote_object_id = models.CharField(max_length=64, blank=True)  # the CW board the callback watches
    registered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    poll_watermark = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    # While a registration runs (sync.registration.register): a second one waits for it.
    registering_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when the integration is removed: the encrypted bundle the removal task needs to delete
    # the webhook (decrypted only by integrations.services.load_credentials).
    removing = models.BooleanField(default=False)
    removal_bundle = models.TextField(blank=True, editable=False)
    removal_config = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountScopedManager()

    def __str__(self) -> str:
        return f"{self.vendor} {self.mode}"


class WebhookReceipt(models.Model):
    """One inbound delivery (Halo webhook, ConnectWise callback), accepted or not."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="webhook_receipts")
    vendor = models.CharField(max_length=16)
    connection_id = models.UUIDField(null=True, blank=True)
    ticket_id = models.CharField(max_length=64, blank=True)
    body_sha256 = models.CharField(max_length=64, blank=True)
    # accepted | duplicate | rejected | ignored | applied | no_change
    outcome = models.CharField(max_length=16)
    detail = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    objects = AccountScopedManager()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["account", "body_sha256"], name="receipt_body"),
                   models.Index(fields=["received_at"], name="receipt_received")]  # retention


class HostWebhook(models.Model):
    """The host product's endpoint for incident changes made in the PSA. The signing secret is
    encrypted with hub.vault (HMAC needs the plaintext), bound to the account and this row."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="host_webhook")
    url = models.URLField(max_length=1000, blank=True)
    secret = models.TextField(blank=True, editable=False)
    secret_set = models.BooleanField(default=False)
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountScopedManager()

    @property
    def vault_id(self) -> str:
        return f"host-webhook:{self.pk}"


class HostDelivery(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Waiting"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="host_deliveries")
    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="host_deliveries")
    event_id = models.CharField(max_length=64, unique=True)
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    objects = AccountScopedManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["created_at"], name="host_delivery_created")]  # retention


class HostDeliveryAttempt(models.Model):
    delivery = models.ForeignKey(HostDelivery, on_delete=models.CASCADE, related_name="attempt_rows")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
