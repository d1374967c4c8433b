"""Usage in, PSA units out: settings, product and tenant mappings, usage history, runs.

A run is a plan (one BillingItem per tenant and product: the PSA line, its current quantity,
the new quantity and what to do) that is then applied: only approved items are written, each
re-read right before the write and written only when it differs. Every item keeps what
produced it (usage, mapping snapshot, trigger) and what it did (before, after, error), which is
what the billing page, the history chart and Revert run read.
"""

from __future__ import annotations

from datetime import time

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from hub.models import Account, Tenant
from hub.tenancy import AccountScopedManager

MAX_UNITS = 10_000_000
PRODUCT_KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"


class Mode(models.TextChoices):
    MONITOR = "monitor", "Monitor only (plans are shown, nothing is written)"
    APPROVE = "approve", "Approve (an operator approves each run's plan)"
    AUTOMATIC = "automatic", "Automatic (within the guardrails)"


class BillingSettings(models.Model):
    """One per account: mode, guardrails, schedule, auto sync, and the account's run claim."""

    class Schedule(models.TextChoices):
        DAILY = "daily", "Daily"
        MONTHLY = "monthly", "Monthly"
        OFF = "off", "Off (manual runs and auto sync only)"

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="billing_settings")
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.APPROVE)
    # Guardrails (automatic mode): a line whose change is larger than either is held for
    # approval; a drop to zero is always held. The percentage applies when the line has units.
    max_change_percent = models.PositiveIntegerField(default=50, validators=[MaxValueValidator(10_000)])
    max_change_units = models.PositiveIntegerField(default=100, validators=[MaxValueValidator(MAX_UNITS)])
    # When scheduled runs happen, in the account's time zone (Account.time_zone).
    schedule = models.CharField(max_length=16, choices=Schedule.choices, default=Schedule.DAILY)
    time_of_day = models.TimeField(default=time(2, 0))
    day_of_month = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(28)],
        help_text="For monthly runs: 1–28, so that every month has it.",
    )
    # Auto sync (seed 004): a usage change queues a sync of that tenant after this delay;
    # further changes within the delay join the same sync.
    auto_sync = models.BooleanField(default=False)
    auto_sync_delay_minutes = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(60)]
    )
    auto_sync_due_at = models.DateTimeField(null=True, blank=True)
    # Usage received after this was not yet covered by an auto sync.
    auto_sync_checkpoint = models.DateTimeField(null=True, blank=True)
    # Bookkeeping for the page and the dispatcher.
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_run = models.ForeignKey("BillingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The account's claim: one run at a time writes to the PSA (conditional UPDATE, leased).
    run_claim = models.CharField(max_length=64, blank=True)
    run_claimed_at = models.DateTimeField(null=True, blank=True)
    running_run = models.ForeignKey("BillingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountScopedManager()

    class Meta:
        verbose_name_plural = "billing settings"

    def __str__(self) -> str:
        return f"Billing settings of {self.account}"


class ProductMapping(models.Model):
    """A hub product ("users", "domains"...) and the PSA product its units are billed as:
    a ConnectWise catalog item, an Autotask service, a Halo item (seed 003's overrides too)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="billing_products")
    key = models.CharField(
        max_length=40,
        validators=[RegexValidator(PRODUCT_KEY_PATTERN, "Use lower-case letters, digits, '-' and '_' (e.g. users).")],
        help_text="The hub product key the host product reports usage for, e.g. users, domains, devices, gb.",
    )
    name = models.CharField(max_length=100, blank=True)
    # The vendor the PSA product belongs to (the connection's when it was chosen): after a
    # change of PSA the mapping no longer applies and its tenants show as unmapped.
    vendor = models.CharField(max_length=16, blank=True)
    psa_product_id = models.CharField(max_length=64, blank=True)
    psa_product_name = models.CharField(max_length=255, blank=True)
    invoice_description = models.CharField(max_length=1000, blank=True)
    unit_price = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    unit_cost = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountScopedManager()

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["account", "key"], name="billing_product_unique_key")]

    def __str__(self) -> str:
        return self.name or self.key

    @property
    def label(self) -> str:
        return self.name or self.key


class BillingMapping(models.Model):
    """Where one tenant's units of one product go: company (default: the tenant's company
    mapping), agreement/contract, line (Autotask contract service, Halo licence), names for
    display, and a per-tenant mode override."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="billing_mappings")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="billing_mappings")
    product = models.ForeignKey(ProductMapping, on_delete=models.CASCADE, related_name="tenant_mappings")
    company_id = models.CharField(max_length=64, blank=True, help_text="Blank: the tenant's company mapping.")
    company_name = models.CharField(max_length=255, blank=True)
    agreement_id = models.CharField(max_length=64, blank=True, help_text="ConnectWise agreement / Autotask contract")
    agreement_name = models.CharField(max_length=255, blank=True)
    line_id = models.CharField(max_length=64, blank=True, help_text="Autotask contract service / Halo licence")
    line_name = models.CharField(max_length=255, blank=True)
    # Blank: the product mapping's. Autotask: the Service of the chosen contract service line.
    psa_product_id = models.CharField(max_length=64, blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, blank=True, help_text="Blank: the account's mode.")
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountScopedManager()

    class Meta:
        ordering = ["tenant__name", "product__key"]
        constraints = [models.UniqueConstraint(fields=["tenant", "product"], name="billing_mapping_unique")]

    def __str__(self) -> str:
        return f"{self.tenant} / {self.product}"


class Usage(models.Model):
    """A tenant's unit count for a product as the host product reported it (history kept:
    a report equal to the latest count only refreshes its last_reported_at)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage")
    product_key = models.CharField(max_length=40)
    units = models.PositiveIntegerField(validators=[MaxValueValidator(MAX_UNITS)])
    as_of = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(default=timezone.now)
    last_reported_at = models.DateTimeField(default=timezone.now)

    objects = AccountScopedManager()

    class Meta:
        ordering = ["-as_of", "-id"]
        indexes = [
            models.Index(fields=["account", "tenant", "product_key", "-as_of", "-id"], name="usage_latest"),
            models.Index(fields=["account", "received_at"], name="usage_received"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} {self.product_key}={self.units} @ {self.as_of:%Y-%m-%d %H:%M}"


class BillingRun(models.Model):
    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual"
        AUTO = "auto", "Auto sync"
        API = "api", "API"
        REVERT = "revert", "Revert"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        WAITING = "waiting", "Waiting for another run"
        PLANNING = "planning", "Planning"
        PLANNED = "planned", "Planned (waiting for approval)"
        APPLYING = "applying", "Applying"
        DONE = "done", "Done"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"

    ACTIVE_STATES = (State.QUEUED, State.WAITING, State.PLANNING, State.APPLYING)

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="billing_runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Who or what asked, for people: "alice@acme.example", "API key Host product", "schedule".
    requested_by_label = models.CharField(max_length=200, blank=True)
    # False: a preview (plan only; approving it applies it). True: "Sync now".
    apply = models.BooleanField(default=False)
    # The account's mode when the run was planned (items may override it per tenant).
    mode = models.CharField(max_length=16, choices=Mode.choices, blank=True)
    vendor = models.CharField(max_length=16, blank=True)
    # None: every tenant; otherwise the ids of the tenants this run covers.
    tenant_ids = models.JSONField(null=True, blank=True)
    reverts = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reverted_by")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    message = models.TextField(blank=True)
    # Progress of the current phase (planning: tenants read; applying: lines written).
    total_items = models.PositiveIntegerField(default=0)
    processed_items = models.PositiveIntegerField(default=0)
    # Per-outcome counts for the page: created, updated, unchanged, held, blocked, failed,
    # unmapped, awaiting_approval, applied, retrying.
    counts = models.JSONField(default=dict, blank=True)
    correlation_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    planned_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountScopedManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="billing_run_account_created"),
            models.Index(fields=["state"], name="billing_run_state"),
        ]

    def __str__(self) -> str:
        return f"Billing run #{self.pk} ({self.get_trigger_display()}, {self.get_state_display()})"

    @property
    def subject(self) -> str:
        return f"billing_run:{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def progress_percent(self) -> int:
        if self.state in (self.State.DONE, self.State.PLANNED, self.State.SKIPPED, self.State.FAILED):
            return 100
        if not self.total_items:
            return 0
        return min(100, int(100 * self.processed_items / self.total_items))


class BillingItem(models.Model):
    """One tenant's line for one product in a run: the plan, and what applying it did."""

    class Action(models.TextChoices):
        CREATE = "create", "Create"
        UPDATE = "update", "Update"
        NONE = "none", "Unchanged"
        BLOCKED = "blocked", "Blocked"
        HELD = "held", "Held for approval"
        UNMAPPED = "unmapped", "Unmapped"
        ERROR = "error", "PSA error"  # could not read the line (transient): retried later

    class State(models.TextChoices):
        PLANNED = "planned", "Planned"
        APPROVED = "approved", "Approved"
        APPLYING = "applying", "Writing"
        APPLIED = "applied", "Applied"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    WRITES = (Action.CREATE, Action.UPDATE, Action.HELD)

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="billing_items")
    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="items")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="billing_items")
    product = models.ForeignKey(ProductMapping, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    product_key = models.CharField(max_length=40, blank=True)  # blank: a tenant with nothing mapped
    mapping = models.ForeignKey(BillingMapping, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The BillingTarget used (company, product, agreement, line, overrides) and display names.
    mapping_snapshot = models.JSONField(default=dict, blank=True)
    usage = models.ForeignKey(Usage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    usage_units = models.PositiveIntegerField(null=True, blank=True)
    usage_as_of = models.DateTimeField(null=True, blank=True)
    line_id = models.CharField(max_length=64, blank=True)
    line_label = models.CharField(max_length=500, blank=True)
    current_quantity = models.IntegerField(null=True, blank=True)
    new_quantity = models.IntegerField(null=True, blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    reason = models.TextField(blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PLANNED)
    approved_by = models.CharField(max_length=200, blank=True)  # a person, or "automatic"
    approved_at = models.DateTimeField(null=True, blank=True)
    before_quantity = models.IntegerField(null=True, blank=True)
    after_quantity = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    # A transient PSA error: tried again at next_attempt_at (the run itself completes).
    retryable = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Set just before the PSA write: a write found "applying" after a crash is re-read first.
    writing_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountScopedManager()

    class Meta:
        ordering = ["run", "tenant__name", "product_key", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "tenant", "product_key"], name="billing_item_unique"),
        ]
        indexes = [
            models.Index(fields=["account", "tenant", "product_key", "-applied_at"], name="billing_item_history"),
            models.Index(fields=["run", "state"], name="billing_item_run_state"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} {self.product_key}: {self.action} ({self.state})"

    @property
    def awaiting_approval(self) -> bool:
        return self.state == self.State.PLANNED and self.action in self.WRITES

    @property
    def changed(self) -> bool:
        return self.state == self.State.APPLIED and self.before_quantity != self.after_quantity
