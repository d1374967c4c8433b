"""Each vendor's words for a ticketing setup in the HTTP fakes, and the tickets and notes the
fakes hold, read the same way for all three (shared by the integration and browser tiers)."""

from __future__ import annotations

from dataclasses import dataclass




@dataclass(frozen=True)
class Vendor:
    board_kind: str
    board: str  # the board / queue / ticket type, by name
    status_parent: bool  # statuses are listed per board
    statuses: dict  # incident status (and "new") -> the PSA status name
    priority_parent: bool
    priorities: dict  # severity -> the PSA priority name
    company: str  # the PSA company the tenant is mapped to, by name


VENDORS = {
    "connectwise": Vendor(
        "boards", "Security Alerts", True,
        {"Open": "New", "Pending": "Investigating", "Snoozed": "Investigating", "Done": "Resolved",
         "Canceled": "Closed - No Action", "Dismissed": "Closed - No Action"},
        False,
        {"Critical": "Priority 1 - Emergency Response", "High": "Priority 2 - Quick Response",
         "Medium": "Priority 3 - Normal Response", "Low": "Priority 4 - Schedule Maintenance"},
        "Globex Corporation",
    ),
    "autotask": Vendor(
        "queues", "Monitoring Alert", False,
        {"new": "New", "Open": "In Progress", "Pending": "Waiting Customer", "Snoozed": "Waiting Customer",
         "Done": "Complete", "Canceled": "Complete", "Dismissed": "Complete"},
        False, {"Critical": "Critical", "High": "High", "Medium": "Medium", "Low": "Low"},
        "Globex Corporation",
    ),
    "halo": Vendor(
        "ticket_types", "Security Alert", True,
        {"Open": "New", "Pending": "Waiting on User", "Snoozed": "Waiting on User", "Done": "Closed",
         "Canceled": "Closed", "Dismissed": "Closed"},
        True,
        {"Critical": "Critical (Security)", "High": "High (Security)", "Medium": "Medium (Security)",
         "Low": "Low (Security)"},
        "Globex Ltd",
    ),
}  # fmt: skip


@dataclass
class FakeTicket:
    id: str
    board: str
    status: str
    priority: str
    company: str
    closed: bool


# The fakes live for the whole session: tickets of earlier tests are left out by id.
_EARLIER: dict[str, set[str]] = {}


def fake_tickets(psas, vendor: str) -> dict[str, list[FakeTicket]]:
    """reference -> this test's tickets carrying it in the vendor's fake (two is a duplicate)."""
    found: dict[str, list[FakeTicket]] = {}
    if vendor == "connectwise":
        fake = psas.connectwise
        with fake.lock:
            rows = [dict(t) for t in fake.tickets.values()]
        for t in rows:
            found.setdefault(t.get("externalXRef") or "", []).append(FakeTicket(
                str(t["id"]), str(t["board"]["id"]), str(t["status"]["id"]), str(t["priority"]["id"]),
                str(t["company"]["id"]), bool(t.get("closedFlag")),
            ))  # fmt: skip
    elif vendor == "autotask":
        fake = psas.autotask
        with fake.lock:
            rows = [dict(t) for t in fake.tables["Tickets"].values()]
        for t in rows:
            found.setdefault(t.get("externalID") or "", []).append(FakeTicket(
                str(t["id"]), str(t.get("queueID")), str(t["status"]), str(t["priority"]), str(t["companyID"]),
                t["status"] == 5,
            ))  # fmt: skip
    else:
        fake = psas.halo
        with fake.lock:
            rows = [dict(t) for t in fake.tickets.values()]
        for t in rows:
            found.setdefault(t.get("supplier_reference") or "", []).append(FakeTicket(
                str(t["id"]), str(t["tickettype_id"]), str(t["status_id"]), str(t["priority_id"]),
                str(t["client_id"]), bool(t["hasbeenclosed"]),
            ))  # fmt: skip
    found.pop("", None)
    earlier = _EARLIER.get(vendor, set())
    found = {ref: [t for t in tickets if t.id not in earlier] for ref, tickets in found.items()}
    return {ref: tickets for ref, tickets in found.items() if tickets}


def forget_earlier_tickets(psas) -> None:
    """From now on, fake_tickets leaves out the tickets the fakes hold already."""
    _EARLIER.clear()
    for vendor in VENDORS:
        _EARLIER[vendor] = {t.id for tickets in fake_tickets(psas, vendor).values() for t in tickets}


def fake_notes(psas, vendor: str, ticket_id: str) -> list[str]:
    if vendor == "connectwise":
        with psas.connectwise.lock:
            return [n["text"] for n in psas.connectwise.notes(int(ticket_id))]
    if vendor == "autotask":
        with psas.autotask.lock:
            rows = list(psas.autotask.tables["TicketNotes"].values())
        return [n["description"] for n in rows if str(n["ticketID"]) == ticket_id]
    with psas.halo.lock:
        rows = list(psas.halo.actions.values())
    return [a.get("note") or "" for a in rows if str(a.get("ticket_id")) == ticket_id]
