"""Halo JSON -> the hub's dataclasses, written defensively: the public sources disagree on
response shapes (wrapped or bare lists, field names that moved between versions), so every
reader here accepts each shape a source has shown."""

from __future__ import annotations

from typing import Any

from integrations.base.billing import BillingLine
from integrations.base.provider import Company, Contact, PicklistItem
from integrations.base.ticketing import TicketRef

# Field names the ticket type's SLA has had across Halo versions (CIPP checks them in this order).
_TICKET_TYPE_SLA_FIELDS = ("default_sla", "default_sla_id", "sla_id", "slaid", "sla")


def rows(body: Any, key: str) -> list[dict]:
    """The records of a list answer: `{"record_count": n, key: [...]}` or a bare array."""
    if isinstance(body, list):
        return [row for row in body if isinstance(row, dict)]
    if isinstance(body, dict):
        found = body.get(key)
        if isinstance(found, list):
            return [row for row in found if isinstance(row, dict)]
    return []


def record_count(body: Any) -> int | None:
    if isinstance(body, dict) and isinstance(body.get("record_count"), int):
        return body["record_count"]
    return None


def one(body: Any) -> dict:
    """The saved object of a one-element POST (an object, or a one-element array on some versions)."""
    if isinstance(body, list):
        body = body[0] if body else {}
    return body if isinstance(body, dict) else {}


def as_int(value: Any) -> int | None:
    """An id as Halo wants it: a real JSON integer (Halo rejects 95.0, fact sheet section 4)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def text(value: Any) -> str:
    return "" if value is None else str(value)


def company(row: dict) -> Company:
    return Company(
        id=text(row.get("id")),
        name=text(row.get("name")),
        identifier=text(row.get("ref") or ""),
        active=not row.get("inactive", False),
    )


def contact(row: dict) -> Contact:
    name = text(row.get("name")) or " ".join(filter(None, (text(row.get("firstname")), text(row.get("surname")))))
    return Contact(
        id=text(row.get("id")),
        name=name,
        email=text(row.get("emailaddress") or row.get("email") or ""),
        company_id=text(row.get("client_id") or ""),
    )


def ticket_ref(row: dict, url: str = "") -> TicketRef:
    ticket_id = text(row.get("id"))
    return TicketRef(
        id=ticket_id,
        number=ticket_id,
        status_id=text(row.get("status_id") or ""),
        closed=bool(row.get("hasbeenclosed")),
        url=url,
    )


def ticket_type_sla_id(row: dict) -> int | None:
    """The SLA attached to a ticket type; None when there is none (Halo uses -1 or 0)."""
    for name in _TICKET_TYPE_SLA_FIELDS:
        value = row.get(name)
        if isinstance(value, dict):
            value = value.get("id")
        number = as_int(value)
        if number is not None and number > 0:
            return number
    return None


def ticket_type(row: dict) -> PicklistItem:
    allowed = [
        text(entry.get("status_id") if isinstance(entry, dict) else entry)
        for entry in (row.get("allowed_status") or [])
        if entry is not None
    ]
    return PicklistItem(
        id=text(row.get("id")),
        name=text(row.get("name")),
        active=not row.get("inactive", False) and row.get("visible", True) is not False,
        extra={
            "sla_id": text(ticket_type_sla_id(row) or ""),
            "initial_status": text(row.get("initial_status") or ""),
            "default_priority": text(row.get("default_priority") or ""),
            "default_team": text(row.get("default_team") or ""),
            "allowall_status": bool(row.get("allowall_status", True)),
            "allowed_status": allowed,
        },
    )


def status(row: dict, parent_id: str = "") -> PicklistItem:
    # What Halo's numeric status `type` means is UNCONFIRMED, so it is passed on, not interpreted.
    return PicklistItem(
        id=text(row.get("id")),
        name=text(row.get("name")),
        parent_id=parent_id,
        extra={"type": row.get("type"), "shortname": text(row.get("shortname") or "")},
    )


def priority(row: dict, parent_id: str = "") -> PicklistItem:
    # A ticket's priority_id is the priority number within its SLA (`priorityid`); `id` is the row
    # of the SLA/priority pair. Whether they ever differ is UNCONFIRMED, so prefer `priorityid`.
    number = row.get("priorityid") if row.get("priorityid") not in (None, "") else row.get("id")
    return PicklistItem(
        id=text(number),
        name=text(row.get("name")),
        parent_id=parent_id,
        active=not row.get("ishidden", False),
        extra={"sla_id": text(row.get("slaid") or ""), "row_id": text(row.get("id"))},
    )


def team(row: dict) -> PicklistItem:
    # Tickets name their team, so the name travels with the id.
    return PicklistItem(
        id=text(row.get("id")),
        name=text(row.get("name")),
        active=not row.get("inactive", False),
        extra={"department_id": text(row.get("department_id") or "")},
    )


def outcome(row: dict) -> PicklistItem:
    return PicklistItem(
        id=text(row.get("id")),
        name=text(row.get("outcome") or row.get("buttonname") or row.get("name") or ""),
        active=not row.get("hidden", False),
    )


def item(row: dict) -> PicklistItem:
    return PicklistItem(
        id=text(row.get("id")),
        name=text(row.get("name")),
        active=not row.get("inactive", False),
        extra={
            "recurring": bool(row.get("isrecurringitem", False)),
            "internal_reference": text(row.get("internalreference") or ""),
        },
    )


def site(row: dict) -> PicklistItem:
    return PicklistItem(
        id=text(row.get("id")),
        name=text(row.get("clientsite_name") or row.get("name") or ""),
        parent_id=text(row.get("client_id") or ""),
        active=not row.get("inactive", False),
    )


def licence_item_id(row: dict) -> str:
    """The Halo Item a licence is linked to (`item_id` from the 2026 schema on; S2)."""
    value = row.get("item_id")
    if value in (None, "", 0, -1):
        return ""
    return text(value)


def licence(row: dict) -> PicklistItem:
    return PicklistItem(
        id=text(row.get("id")),
        name=text(row.get("name")),
        parent_id=text(row.get("client_id") or ""),
        active=row.get("is_active", True) is not False and not row.get("deleted", False),
        extra={
            "count": as_int(row.get("count")) or 0,
            "item_id": licence_item_id(row),
            "site_id": text(row.get("site_id") if row.get("site_id") is not None else ""),
            "type": row.get("type"),
        },
    )


def licence_label(row: dict) -> str:
    name = text(row.get("name")) or f"#{text(row.get('id'))}"
    return f"Software licence “{name}” ({text(row.get('id'))})"


def billing_line(row: dict) -> BillingLine:
    return BillingLine(line_id=text(row.get("id")), quantity=as_int(row.get("count")) or 0, label=licence_label(row))
