"""Template helpers of the billing pages: a run's counts in words, a line's outcome."""

from __future__ import annotations

from django import template

from billing.models import BillingItem
from billing.selectors import summary_counts

register = template.Library()

Item = BillingItem


@register.filter
def counts_list(counts) -> list[tuple[str, str, int]]:
    """[(name, words, n)] of the non-zero counts, in the summary's order, each line counted once."""
    return summary_counts(counts)


def outcome(item: BillingItem) -> tuple[str, str]:
    """(what happened, badge class) for one tenant's line."""
    state, action = item.state, item.action
    if state == Item.State.APPLIED:
        if item.before_quantity == item.after_quantity:
            return "Unchanged", "muted"
        return ("Created", "ok") if action == Item.Action.CREATE else ("Updated", "ok")
    if state == Item.State.PLANNED:
        if action == Item.Action.HELD:
            return "Held for approval", "pending"
        if action in Item.WRITES:
            return f"{'Create' if action == Item.Action.CREATE else 'Update'}: waiting for approval", "pending"
        return "Planned", "pending"
    if state in (Item.State.APPROVED, Item.State.APPLYING):
        return "Writing…", "pending"
    if state == Item.State.FAILED:
        if item.retryable:
            return "Failed: retried later", "pending"
        return ("Blocked", "bad") if action == Item.Action.BLOCKED else ("Failed", "bad")
    if action == Item.Action.UNMAPPED:
        return "Unmapped", "muted"
    if action == Item.Action.NONE:
        return ("No usage yet", "muted") if item.current_quantity is None else ("Unchanged", "muted")
    if action in (Item.Action.CREATE, Item.Action.UPDATE):
        return f"Would {'create' if action == Item.Action.CREATE else 'update'} (monitor only)", "muted"
    return item.get_state_display(), "muted"


@register.filter
def outcome_label(item: BillingItem) -> str:
    return outcome(item)[0]


@register.filter
def outcome_class(item: BillingItem) -> str:
    return outcome(item)[1]


@register.filter
def item_message(item: BillingItem) -> str:
    """The error word for word when the line failed, else why it was planned as it was."""
    return item.error or item.reason


@register.filter
def quantities(item: BillingItem) -> str:
    if item.state == Item.State.APPLIED and item.before_quantity is not None:
        return f"{item.before_quantity} → {item.after_quantity}"
    if item.current_quantity is not None and item.new_quantity is not None:
        return f"{item.current_quantity} → {item.new_quantity}"
    if item.new_quantity is not None:
        return f"→ {item.new_quantity}"
    return ""


@register.filter
def line_of(item: BillingItem) -> str:
    """Where the line is (or would be) in the PSA: its label, else the mapped names."""
    if item.line_label:
        return item.line_label
    names = (item.mapping_snapshot or {}).get("names") or {}
    return " / ".join(part for part in (names.get("agreement_name"), names.get("line_name")) if part)
