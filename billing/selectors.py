"""Reads for the billing pages and API: latest usage, runs and their lines, quantity history.

Everything is scoped to an account (DESIGN.md rule 7); nothing here calls a PSA or writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import F, Window
from django.db.models.functions import RowNumber

from billing.models import BillingItem, BillingMapping, BillingRun, BillingSettings, ProductMapping, Usage
from hub.models import Account, Tenant

# (count name, how the summary says it), in the order runs are summarised.
COUNT_LABELS = (
    ("created", "created"),
    ("updated", "updated"),
    ("unchanged", "unchanged"),
    ("awaiting_approval", "waiting for approval"),
    ("held", "held by the guardrails"),
    ("monitor", "not written (monitor only)"),
    ("blocked", "blocked"),
    ("failed", "failed"),
    ("retrying", "to retry"),
    ("no_usage", "without usage"),
    ("unmapped", "unmapped"),
)


# Counts that are part of another one (held lines wait for approval; blocked and retrying
# lines failed): a summary names them apart and the other without them, so no line counts twice.
PART_OF = {"held": "awaiting_approval", "blocked": "failed", "retrying": "failed"}


def summary_counts(counts: dict | None) -> list[tuple[str, str, int]]:
    """[(count name, words, n)] of a run's non-zero counts for people, each line counted once:
    "1 updated, 3 blocked" rather than "1 updated, 3 blocked, 3 failed"."""
    shown = dict(counts or {})
    for part, whole in PART_OF.items():
        if shown.get(part):
            shown[whole] = max(0, shown.get(whole, 0) - shown[part])
    return [(name, label, shown[name]) for name, label in COUNT_LABELS if shown.get(name)]


def latest_usage(account: Account, tenant_ids: Iterable[int] | None = None) -> dict[tuple[int, str], Usage]:
    """{(tenant id, product key): the latest Usage} in one query (latest as_of, then newest row)."""
    rows = Usage.objects.for_account(account)
    if tenant_ids is not None:
        rows = rows.filter(tenant_id__in=list(tenant_ids))
    rows = rows.annotate(
        rank=Window(RowNumber(), partition_by=[F("tenant_id"), F("product_key")], order_by=[F("as_of").desc(), F("id").desc()])
    ).filter(rank=1)
    return {(usage.tenant_id, usage.product_key): usage for usage in rows}


def usage_history(account: Account, tenant: Tenant, product_key: str | None = None):
    """Reported counts, newest first (a queryset: page it)."""
    rows = Usage.objects.for_account(account).filter(tenant=tenant)
    if product_key is not None:
        rows = rows.filter(product_key=product_key)
    return rows.order_by("-as_of", "-id")


def products(account: Account):
    return ProductMapping.objects.for_account(account).order_by("key")


def tenant_mappings(account: Account, tenant: Tenant):
    return BillingMapping.objects.for_account(account).filter(tenant=tenant).select_related("product").order_by("product__key")


def runs(account: Account):
    """Newest first, with who asked (page it)."""
    return BillingRun.objects.for_account(account).select_related("reverts").order_by("-created_at", "-id")


def run_items(run: BillingRun, *, tenant: Tenant | None = None, state: str | None = None, action: str | None = None):
    items = BillingItem.objects.filter(run=run).select_related("tenant").order_by("tenant__name", "tenant__external_id", "product_key", "id")
    if tenant is not None:
        items = items.filter(tenant=tenant)
    if state:
        items = items.filter(state=state)
    if action:
        items = items.filter(action=action)
    return items


def item_counts(run: BillingRun) -> dict[str, int]:
    """Per-outcome counts of a run's lines (stored on the run as `counts` when it finishes)."""
    counts = {name: 0 for name, _ in COUNT_LABELS}
    counts["total"] = 0
    rows = BillingItem.objects.filter(run=run).order_by().values_list(
        "action", "state", "before_quantity", "after_quantity", "current_quantity", "retryable"
    )
    for action, state, before, after, current, retryable in rows:
        counts["total"] += 1
        if state == BillingItem.State.APPLIED:
            if before == after:
                counts["unchanged"] += 1
            elif action == BillingItem.Action.CREATE:
                counts["created"] += 1
            else:
                counts["updated"] += 1
        elif state == BillingItem.State.PLANNED and action in BillingItem.WRITES:
            counts["awaiting_approval"] += 1
            if action == BillingItem.Action.HELD:
                counts["held"] += 1
        elif state == BillingItem.State.FAILED:
            counts["failed"] += 1
            if action == BillingItem.Action.BLOCKED:
                counts["blocked"] += 1
            if retryable:
                counts["retrying"] += 1
        elif action == BillingItem.Action.UNMAPPED:
            counts["unmapped"] += 1
        elif action == BillingItem.Action.NONE:
            # Not read at all: mapped, but no usage reported yet.
            counts["no_usage" if current is None else "unchanged"] += 1
        elif state == BillingItem.State.SKIPPED and action in (BillingItem.Action.CREATE, BillingItem.Action.UPDATE):
            counts["monitor"] += 1
    return counts


def quantity_history(account: Account, tenant: Tenant, product_key: str | None = None, limit: int = 100) -> list[BillingItem]:
    """Quantities written to the PSA for a tenant, oldest first (for the table and the chart):
    each applied line that changed something, with before, after, run and trigger."""
    items = (
        BillingItem.objects.for_account(account)
        .filter(tenant=tenant, state=BillingItem.State.APPLIED)
        .exclude(before_quantity=F("after_quantity"))
        .select_related("run")
        .order_by("-applied_at", "-id")
    )
    if product_key is not None:
        items = items.filter(product_key=product_key)
    return list(reversed(items[:limit]))


def last_items(account: Account, tenant_ids: Iterable[int] | None = None) -> dict[tuple[int, str], BillingItem]:
    """{(tenant id, product key): the tenant's line in the latest finished or planned run}."""
    items = BillingItem.objects.for_account(account).exclude(run__state__in=BillingRun.ACTIVE_STATES)
    if tenant_ids is not None:
        items = items.filter(tenant_id__in=list(tenant_ids))
    items = items.annotate(
        rank=Window(RowNumber(), partition_by=[F("tenant_id"), F("product_key")], order_by=[F("run_id").desc(), F("id").desc()])
    ).filter(rank=1)
    return {(item.tenant_id, item.product_key): item for item in items}


@dataclass
class TenantProductRow:
    product: ProductMapping
    mapping: BillingMapping | None
    usage: Usage | None
    last_item: BillingItem | None


@dataclass
class TenantRow:
    tenant: Tenant
    products: list[TenantProductRow] = field(default_factory=list)

    @property
    def mapped(self) -> bool:
        return any(row.mapping is not None for row in self.products)


def tenant_rows(account: Account, tenants: Iterable[Tenant]) -> list[TenantRow]:
    """For the billing page: each tenant with, per product, its mapping, latest usage and its
    line in the latest run. A few queries whatever the number of tenants."""
    tenants = list(tenants)
    ids = [t.pk for t in tenants]
    all_products = list(products(account))
    mappings = {(m.tenant_id, m.product_id): m for m in BillingMapping.objects.for_account(account).filter(tenant_id__in=ids)}
    usage = latest_usage(account, ids)
    items = last_items(account, ids)
    rows = []
    for tenant in tenants:
        row = TenantRow(tenant)
        for product in all_products:
            row.products.append(TenantProductRow(
                product, mappings.get((tenant.pk, product.pk)), usage.get((tenant.pk, product.key)),
                items.get((tenant.pk, product.key)),
            ))  # fmt: skip
        rows.append(row)
    return rows


def settings_of(account: Account) -> BillingSettings | None:
    """The account's billing settings row, if billing was ever set up (services.get_settings creates it)."""
    return BillingSettings.objects.for_account(account).select_related("last_run", "running_run").first()


def active_run(account: Account) -> BillingRun | None:
    """The newest run still moving (for the progress bar)."""
    return BillingRun.objects.for_account(account).filter(state__in=BillingRun.ACTIVE_STATES).order_by("-created_at", "-id").first()
