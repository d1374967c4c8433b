"""Tickets in Autotask: create once, find again, follow status and priority, add notes.

The incident's reference goes into the ticket's `externalID`: a string field of the swagger's
TicketModel (≤50 characters) meant for an outside system's id, and not among the Ticket fields
Autotask documents as unqueryable, so find_by_reference can search it. The other
candidates are worse: `purchaseOrderNumber` shows on invoices, `rmmAlertID` belongs to RMM
integrations, and a user-defined field would have to be created by every MSP first.

TicketDraft in Autotask's words: board_id = queueID, type_id = ticketType, source_id = source,
subtype_id = subIssueType; `extra` may carry issue_type_id, sub_issue_type_id,
ticket_category_id; the draft's contact_email is looked up among the company's active contacts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from integrations.autotask import parse
from integrations.autotask.client import AutotaskClient, query_all, query_body
from integrations.base.errors import InvalidError, NotFoundError
from integrations.base.ticketing import TicketChange, TicketDraft, TicketingAdapter, TicketRef

TITLE_LIMIT = 255
DESCRIPTION_LIMIT = 8000
NOTE_TITLE_LIMIT = 250
NOTE_LIMIT = 32000
REFERENCE_LIMIT = 50  # Tickets.externalID
TRUNCATED = "\n\n[Shortened by the hub: the full text was longer than Autotask allows ({limit:,} characters).]"
# TicketNotes.publish values in public reports; the database's own labels win when present.
PUBLISH_ALL, PUBLISH_INTERNAL = "1", "2"


def shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = TRUNCATED.format(limit=limit)
    return text[: limit - len(note)] + note


def one_line(text: str, limit: int) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class AutotaskTicketing(TicketingAdapter):
    def __init__(
        self,
        client: AutotaskClient,
        *,
        ticket_url: Callable[[str], str] = lambda ticket_id: "",
        note_fields: Callable[[], dict] | None = None,
        note_type_id: str = "",
        closed_statuses: frozenset[str] = frozenset({parse.COMPLETE_STATUS}),
    ):
        self.client = client
        self.ticket_url = ticket_url
        self._load_note_fields = note_fields or (lambda: client.entity_fields("TicketNotes"))
        self._note_fields_cache: dict | None = None
        self.note_type_id = note_type_id
        self.closed_statuses = closed_statuses

    def _ref(self, record: dict) -> TicketRef:
        ticket_id = parse.text_id(parse.field(record, "id"))
        status = parse.text_id(parse.field(record, "status"))
        return TicketRef(
            id=ticket_id,
            number=parse.field(record, "ticketNumber") or "",
            status_id=status,
            closed=status in self.closed_statuses,
            url=self.ticket_url(ticket_id),
        )

    def create(self, draft: TicketDraft) -> TicketRef:
        if len(draft.reference) > REFERENCE_LIMIT:
            raise InvalidError(
                f"The ticket reference is longer than Autotask's {REFERENCE_LIMIT} characters.", field="externalID"
            )
        if not draft.company_id:
            raise InvalidError("Choose the Autotask company for this ticket.", field="companyID")
        extra = draft.extra or {}
        sub_issue_type = extra.get("sub_issue_type_id") or draft.subtype_id
        contact_id = draft.contact_id or self._contact_by_email(draft.company_id, draft.contact_email)
        body: dict = {
            "companyID": _int(draft.company_id),
            "title": one_line(draft.summary, TITLE_LIMIT) or "Incident",
            # Autotask keeps plain text only; rich text would be lost, so the service sends text.
            "description": shorten(draft.description or "", DESCRIPTION_LIMIT),
            "externalID": draft.reference,
        }
        # Unset fields are left out: null-valued properties in create bodies cause 500s.
        optional = {
            "status": draft.status_id,
            "priority": draft.priority_id,
            "queueID": draft.board_id,
            "ticketType": draft.type_id,
            "source": draft.source_id,
            "issueType": extra.get("issue_type_id", ""),
            # A sub-issue type must belong to the issue type, so it only goes with one.
            "subIssueType": sub_issue_type if extra.get("issue_type_id") else "",
            "ticketCategory": extra.get("ticket_category_id", ""),
            "contactID": contact_id,
        }
        body.update({name: _int(value) for name, value in optional.items() if value not in ("", None)})
        ticket_id = self.client.create_ticket(body)
        return self.get(str(ticket_id))

    def _contact_by_email(self, company_id: str, email: str) -> str:
        """The company's active contact with this e-mail address, or "" (a ticket's contact must
        belong to the ticket's company, so other companies' contacts are never used)."""
        email = (email or "").strip()
        if not email:
            return ""
        filters = [
            {"op": "eq", "field": "companyID", "value": _int(company_id)},
            {"op": "eq", "field": "emailAddress", "value": email},
            {"op": "eq", "field": "isActive", "value": 1},
        ]
        page = self.client.query("Contacts", query_body(filters, max_records=5, include_fields=["emailAddress"]))
        items = parse.field(page, "items") or []
        ids = [parse.field(r, "id") for r in items if (parse.field(r, "emailAddress") or "").lower() == email.lower()]
        return str(min(ids)) if ids else ""

    def find_by_reference(self, reference: str) -> TicketRef | None:
        body = query_body(
            [{"op": "eq", "field": "externalID", "value": reference}],
            max_records=5,
            include_fields=["id", "ticketNumber", "status", "externalID"],
        )
        page = self.client.query("Tickets", body)
        # String comparisons may be case-insensitive in Autotask: only an exact match counts.
        matches = [r for r in parse.field(page, "items") or [] if parse.field(r, "externalID") == reference]
        if not matches:
            return None
        return self._ref(min(matches, key=lambda r: parse.field(r, "id") or 0))

    def get(self, ticket_id: str) -> TicketRef:
        record = self.client.item("Tickets", _int(ticket_id))
        if record is None:
            raise NotFoundError(f"Autotask ticket {ticket_id} does not exist (or the API user cannot see it).")
        return self._ref(record)

    # --- two-way sync ------------------------------------------------------------------------------

    @staticmethod
    def _change(record: dict) -> TicketChange:
        return TicketChange(ticket_id=parse.text_id(parse.field(record, "id")),
                            status_id=parse.text_id(parse.field(record, "status")),
                            changed_at_iso=str(parse.field(record, "lastActivityDate") or ""))

    def read_change(self, ticket_id: str) -> TicketChange:
        record = self.client.item("Tickets", _int(ticket_id))
        if record is None:
            raise NotFoundError(f"Autotask ticket {ticket_id} does not exist (or the API user cannot see it).")
        return self._change(record)

    def changes_since(self, since_iso: str, reference_prefix: str) -> Iterator[TicketChange]:
        """Tickets whose lastActivityDate is after `since_iso` and whose externalID starts with
        `reference_prefix` (the hub's own), page by page (nextPageUrl, 500 a page)."""
        body = query_body(
            [{"op": "gt", "field": "lastActivityDate", "value": since_iso},
             {"op": "beginsWith", "field": "externalID", "value": reference_prefix}],
            include_fields=["id", "status", "lastActivityDate", "externalID"],
        )
        for record in query_all(self.client, "Tickets", body):
            yield self._change(record)

    def update(self, ticket_id: str, *, status_id: str = "", priority_id: str = "") -> TicketRef:
        record = self.client.item("Tickets", _int(ticket_id))
        if record is None:
            raise NotFoundError(f"Autotask ticket {ticket_id} does not exist (or the API user cannot see it).")
        changes = {}
        if status_id and parse.text_id(parse.field(record, "status")) != str(status_id):
            changes["status"] = _int(status_id)
        if priority_id and parse.text_id(parse.field(record, "priority")) != str(priority_id):
            changes["priority"] = _int(priority_id)
        if not changes:
            return self._ref(record)
        self.client.patch_ticket({"id": _int(ticket_id), **changes})
        return self._ref({**record, **changes})

    def add_note(self, ticket_id: str, text: str, *, internal: bool = True) -> None:
        text = (text or "").strip()
        # Ticket categories can require note titles, so there always is one.
        title = one_line(text.splitlines()[0], NOTE_TITLE_LIMIT) if text else "Update from the hub"
        body = {
            "ticketID": _int(ticket_id),
            "title": title,
            "description": shorten(text or title, NOTE_LIMIT),
            "noteType": _int(self._note_type()),
            "publish": _int(self._publish(internal)),
        }
        self.client.create_ticket_note(ticket_id, body)

    def note_exists(self, ticket_id: str, marker: str) -> bool:
        body = query_body(
            [
                {"op": "eq", "field": "ticketID", "value": _int(ticket_id)},
                {"op": "contains", "field": "description", "value": marker},
            ],
            max_records=1,
            include_fields=["id", "description"],
        )
        items = self.client.query("TicketNotes", body).get("items") or []
        # "contains" may ignore case in Autotask; the marker must match exactly.
        return any(marker in (item.get("description") or "") for item in items)

    def _note_fields(self) -> dict:
        if self._note_fields_cache is None:
            self._note_fields_cache = self._load_note_fields()
        return self._note_fields_cache

    def _note_type(self) -> str:
        if not self.note_type_id:
            # Note types differ per database; the one Autotask marks as default is the safe choice.
            self.note_type_id = parse.default_value(self._note_fields(), "noteType") or "1"
        return self.note_type_id

    def _publish(self, internal: bool) -> str:
        for item in parse.picklist(self._note_fields(), "publish"):
            label = item.name.lower()
            if internal and "internal" in label and "co-managed" not in label:
                return item.id
            if not internal and label.startswith("all"):
                return item.id
        return PUBLISH_INTERNAL if internal else PUBLISH_ALL


def _int(value) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise InvalidError(f"{value!r} is not an Autotask id.", field="id") from None
