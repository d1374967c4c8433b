"""An in-memory PSA for service, page and API tests: no HTTP, fully scripted.

Tests put it in place of a real vendor by patching ``integrations.registry.VENDORS`` (see the
``memory_psa`` fixture in tests/unit/conftest.py) and configure it through the module-level
``state``: the companies and picklists it knows, the permission report, and ``mode``, which
makes every call fail the way a PSA does:

    ok                  everything works
    auth_failed         AuthFailedError (permanent)
    permission_missing  PermissionMissingError (permanent)
    unavailable         UnavailableError (transient: tasks retry it)
    rate_limited        RateLimitedError (transient)
    crash               an unexpected exception whose text holds the secret, as a careless
                        library might raise: the hub must never show or store that text

``failures`` (when set) limits a failing mode to that many calls, after which the PSA
recovers. Each call goes through the transport's limiter and reports a RequestRecord to
``transport.on_request``, so the service layer's request logging runs as it does for real.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django import forms

from integrations.base.billing import BillingAdapter, BillingFields
from integrations.base.budget import RequestBudget
from integrations.base.client import RequestRecord, Transport
from integrations.base.errors import (
    AuthFailedError,
    NotFoundError,
    PermissionMissingError,
    RateLimitedError,
    UnavailableError,
)
from integrations.base.provider import (
    Company,
    Contact,
    PermissionCheck,
    PermissionReport,
    PicklistItem,
    Provider,
    VerifyResult,
)
from integrations.base.status_sync import POLL, PollScope, StatusSync
from integrations.base.ticketing import ChoiceField, TicketChange, TicketDraft, TicketingAdapter, TicketingFields, TicketRef

MODES = ("ok", "auth_failed", "permission_missing", "unavailable", "rate_limited", "crash")
PAGE_SIZE = 2  # companies per "page", so a handful of companies makes several requests


def default_report() -> PermissionReport:
    return PermissionReport(
        checks=(
            PermissionCheck("companies", "Companies > Company Maintenance", "sync", True),
            PermissionCheck("service.priority", "Service > Priority", "tickets", True),
            PermissionCheck("service.tickets", "Service > Service Tickets", "tickets", True),
        )
    )


def missing_priority_report() -> PermissionReport:
    """Seed 000's example: the API user cannot read priorities."""
    return PermissionReport(
        checks=(
            PermissionCheck("companies", "Companies > Company Maintenance", "sync", True),
            PermissionCheck(
                "service.priority", "Service > Priority", "tickets", False,
                message="Memory PSA API user does not have permission to access Service > Priority.",
                fix="System > Security Roles > (the API role) > Service Desk > Priority: Inquire Level All.",
            ),
            PermissionCheck("service.tickets", "Service > Service Tickets", "tickets", True),
        )
    )


@dataclass
class MemoryState:
    mode: str = "ok"
    failures: int | None = None  # fail this many calls in `mode`, then recover
    display_name: str = "Memory PSA (acme)"
    config_updates: dict = field(default_factory=lambda: {"codebase": "v2025_1/"})
    companies: list[Company] = field(default_factory=list)
    picklists: dict[tuple[str, str], list[PicklistItem]] = field(default_factory=dict)
    permission_report: PermissionReport = field(default_factory=default_report)
    retry_after: float | None = 7.0
    # What happened: (method name, args) per call, and the secrets each provider was built with.
    calls: list[tuple[str, tuple]] = field(default_factory=list)
    secrets_seen: list[dict] = field(default_factory=list)

    def reset(self) -> None:
        fresh = MemoryState()
        self.__dict__.update(fresh.__dict__)
        self.companies = [
            Company("1", "Acme Corp", identifier="AcmeCorp"),
            Company("2", "Globex, Inc.", identifier="Globex"),
            Company("3", "Initech LLC", identifier="Initech"),
            Company("4", "Umbrella Holdings", identifier="Umbrella"),
            Company("5", "Stark Industries", identifier="Stark"),
        ]
        self.picklists = {
            ("boards", ""): [PicklistItem("1", "Help Desk"), PicklistItem("2", "Projects")],
            ("priorities", ""): [PicklistItem("8", "Priority 1 - Critical"), PicklistItem("9", "Priority 3 - Normal")],
            ("statuses", "1"): [PicklistItem("10", "New", parent_id="1"),
                                PicklistItem("11", "Closed", parent_id="1", extra={"closed": True})],
        }

    def called(self, name: str) -> list[tuple]:
        return [args for method, args in self.calls if method == name]


state = MemoryState()
state.reset()


class MemoryStatusSync(StatusSync):
    mode = POLL
    poll_reason = "the memory PSA has no webhooks"

    def changes(self, adapter, since_iso: str, scope: PollScope):
        return [adapter.read_change(ticket_id) for ticket_id in scope.ticket_ids]


class MemoryProvider(Provider):
    slug = "memory"
    name = "Memory PSA"
    display_name = "Memory PSA"
    link_form = "tests.fakes.memory.MemoryLinkForm"
    secret_fields = ("api_key",)
    config_fields = ("site",)
    picklist_kinds = {"boards": None, "priorities": None, "statuses": "board"}
    budget = RequestBudget(max_requests=1000, window_seconds=60, max_concurrent=4)
    ticketing_fields = TicketingFields(
        board=ChoiceField("board_id", "Board", "boards", required=True), board_noun="board",
        statuses_kind="statuses", statuses_parent="board_id", priorities_kind="priorities", priorities_parent="",
    )
    billing_fields = BillingFields(
        name="Memory PSA", product_noun="product", agreement_noun="agreement", needs_agreement=True,
        product_kind="products", product_label="Product", company_label="Company", company_choice=False,
        agreement_kind="agreements", agreement_label="Agreement",
    )
    status_sync = MemoryStatusSync()

    # What a vendor's memory stand-in keeps of the vendor: its words and declarations. The wire,
    # the credentials and the lists stay the memory PSA's own.
    DECLARED = ("slug", "name", "display_name", "budget", "ticketing_fields", "billing_fields", "status_sync",
                "credentials_hint", "expiring_secret", "hub_settings", "permissions")

    @classmethod
    def standing_in_for(cls, provider: type[Provider]) -> type[MemoryProvider]:
        return type(f"Memory{provider.__name__}", (cls,), {name: getattr(provider, name) for name in cls.DECLARED})

    def __init__(self, config: dict, secrets: dict, transport: Transport | None = None, **extras):
        super().__init__(config, secrets, transport, token_store=extras.get("token_store"))
        self.extras = extras
        state.secrets_seen.append(dict(secrets))

    # --- the fake wire ------------------------------------------------------------------------

    def _call(self, name: str, path: str, *args) -> None:
        """One pretend request: limiter, log hook, then the failure the mode asks for."""
        state.calls.append((name, args))
        mode = state.mode
        if mode != "ok" and state.failures is not None:
            if state.failures <= 0:
                mode = "ok"
            else:
                state.failures -= 1
        status = {"ok": 200, "auth_failed": 401, "permission_missing": 403, "unavailable": 503,
                  "rate_limited": 429, "crash": None}[mode]
        site = self.config.get("site", "psa.example.com")
        with self.transport.limiter.acquire("all"):
            if self.transport.on_request is not None:
                self.transport.on_request(
                    RequestRecord(
                        method="GET", url=f"https://{site}/api/{path}", path=f"/api/{path}", status=status,
                        duration_ms=3, request_excerpt="",
                        response_excerpt='{"ok": true}' if status == 200 else '{"message": "refused"}',
                        attempt=1, error="RuntimeError" if status is None else "",
                    )
                )
        if mode == "ok":
            return
        if mode == "auth_failed":
            raise AuthFailedError(
                "Authentication failed: re-check the Site and the API key. Memory PSA said: invalid key", status=401
            )
        if mode == "permission_missing":
            raise PermissionMissingError(
                "Memory PSA API user does not have permission to access Service > Priority.",
                which="Service > Priority", fix="Grant Inquire on Service > Priority.", status=403,
            )
        if mode == "unavailable":
            raise UnavailableError(
                f"Could not reach Memory PSA at {site}: the connection timed out. Check the region/URL.", status=503
            )
        if mode == "rate_limited":
            raise RateLimitedError("Memory PSA is limiting requests (HTTP 429); the hub will try again later.",
                                   retry_after=state.retry_after, status=429)
        # "crash": what a careless library might raise, secret and all.
        raise RuntimeError(f"boom while calling {site} with {self.secrets.get('api_key')}")

    # --- Provider ----------------------------------------------------------------------------------

    def verify(self) -> VerifyResult:
        self._call("verify", "system/info")
        return VerifyResult(display_name=state.display_name, config_updates=dict(state.config_updates))

    def check_permissions(self) -> PermissionReport:
        self._call("check_permissions", "security/probe")
        return state.permission_report

    def companies(self, search: str = "") -> Iterator[Company]:
        found = [c for c in state.companies if search.lower() in c.name.lower()]
        for start in range(0, max(len(found), 1), PAGE_SIZE):
            self._call("companies", f"companies?page={start // PAGE_SIZE + 1}", search)
            yield from found[start:start + PAGE_SIZE]

    def contacts(self, company_id: str) -> list[Contact]:
        self._call("contacts", f"companies/{company_id}/contacts", company_id)
        return []

    def picklist(self, kind: str, parent_id: str = "") -> list[PicklistItem]:
        self._call("picklist", f"lists/{kind}?parent={parent_id}", kind, parent_id)
        if kind not in self.picklist_kinds:
            raise NotFoundError(f"Memory PSA has no list {kind!r}.")
        return list(state.picklists.get((kind, parent_id), []))

    def ticketing(self) -> TicketingAdapter:
        return MemoryTicketing(self)

    def billing(self) -> BillingAdapter:
        return MemoryBilling(self)


class MemoryLinkForm(forms.Form):
    """The link form the real vendor forms follow: shown fields become config, secret fields
    are write-only (a blank one on update keeps the stored value)."""

    site = forms.CharField(label="Site", max_length=200, help_text="Your PSA's host name, e.g. psa.example.com.")
    api_key = forms.CharField(
        label="API key", required=False, strip=True, widget=forms.PasswordInput(render_value=False),
        help_text="Made under Setup > API keys.",
    )

    def __init__(self, *args, existing_secrets=(), allow_private=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.existing_secrets = set(existing_secrets)
        if "api_key" in self.existing_secrets:
            self.fields["api_key"].help_text = "Stored. Leave blank to keep it."

    def clean_site(self) -> str:
        site = self.cleaned_data["site"].strip()
        site = site.removeprefix("https://").removeprefix("http://").rstrip("/")
        if not site or "/" in site or " " in site:
            raise forms.ValidationError("Enter the host name only, e.g. psa.example.com.")
        return site.lower()

    def clean_api_key(self) -> str:
        key = self.cleaned_data.get("api_key", "")
        if not key and "api_key" not in self.existing_secrets:
            raise forms.ValidationError("Enter the API key.")
        return key

    def config_and_secrets(self) -> tuple[dict, dict]:
        return {"site": self.cleaned_data["site"]}, {"api_key": self.cleaned_data["api_key"]}


# --- tickets ----------------------------------------------------------------------------------------
# The memory PSA's tickets, for the ticketing service and API tests. They live in `tickets`
# beside `state` (whose reset does not know them); the ticketing tests' `psa` fixture resets
# both. Every adapter call goes through MemoryProvider._call first, so `state.mode` and
# `state.failures` make ticket calls fail as they make the others fail, before any write.


@dataclass
class MemoryTickets:
    records: dict[str, dict] = field(default_factory=dict)  # ticket id -> the ticket
    notes: dict[str, list[str]] = field(default_factory=dict)  # ticket id -> note texts, oldest first
    closed_statuses: set[str] = field(default_factory=lambda: {"11"})
    # method -> how many calls still make the write and then lose the answer
    # (UnavailableError(outcome_unknown=True)), as a timeout after the request went out does.
    lose_answer: dict[str, int] = field(default_factory=dict)
    # method -> the error raised instead of the call (a permanent refusal, e.g. a validation error).
    refuse: dict[str, Exception] = field(default_factory=dict)
    # method -> called with the call's args just before the write (something happens meanwhile).
    before: dict[str, Callable] = field(default_factory=dict)
    next_id: int = 7000

    def reset(self) -> None:
        self.__dict__.update(MemoryTickets().__dict__)

    def by_reference(self, reference: str) -> list[dict]:
        return [t for t in self.records.values() if t["reference"] == reference]


tickets = MemoryTickets()


class MemoryTicketing(TicketingAdapter):
    """TicketingAdapter over `tickets`: searchable reference, read-before-write updates, notes."""

    def __init__(self, provider: MemoryProvider):
        self.provider = provider

    def _write(self, method: str, path: str, *args) -> None:
        self.provider._call(method, path, *args)
        if method in tickets.refuse:
            raise tickets.refuse[method]
        if method in tickets.before:
            tickets.before[method](*args)

    @staticmethod
    def _lose_answer(method: str) -> None:
        if tickets.lose_answer.get(method, 0) > 0:
            tickets.lose_answer[method] -= 1
            raise UnavailableError(
                "Could not reach Memory PSA: the connection timed out after the request was sent.",
                outcome_unknown=True,
            )

    def _ref(self, ticket: dict) -> TicketRef:
        return TicketRef(
            id=ticket["id"], number=ticket["number"], status_id=ticket["status_id"], closed=ticket["closed"],
            url=f"https://psa.example.com/tickets/{ticket['id']}",
        )

    def _ticket(self, ticket_id: str) -> dict:
        if ticket_id not in tickets.records:
            raise NotFoundError(f"Memory PSA ticket {ticket_id} does not exist.")
        return tickets.records[ticket_id]

    def find_by_reference(self, reference: str) -> TicketRef | None:
        self.provider._call("find_by_reference", f"tickets?reference={reference}", reference)
        found = sorted(tickets.by_reference(reference), key=lambda t: int(t["id"]))
        return self._ref(found[0]) if found else None

    def create(self, draft: TicketDraft) -> TicketRef:
        self._write("create", "tickets", draft)
        ticket_id = str(tickets.next_id)
        tickets.next_id += 1
        status_id = draft.status_id or "10"
        tickets.records[ticket_id] = {
            "id": ticket_id, "number": f"T{ticket_id}", "reference": draft.reference, "company_id": draft.company_id,
            "summary": draft.summary, "description": draft.description, "board_id": draft.board_id,
            "status_id": status_id, "priority_id": draft.priority_id, "type_id": draft.type_id,
            "subtype_id": draft.subtype_id, "item_id": draft.item_id, "source_id": draft.source_id,
            "team_id": draft.team_id, "contact_email": draft.contact_email, "extra": dict(draft.extra),
            "closed": status_id in tickets.closed_statuses,
        }  # fmt: skip
        tickets.notes[ticket_id] = []
        self._lose_answer("create")
        return self._ref(tickets.records[ticket_id])

    def get(self, ticket_id: str) -> TicketRef:
        self.provider._call("get", f"tickets/{ticket_id}", ticket_id)
        return self._ref(self._ticket(ticket_id))

    def read_change(self, ticket_id: str) -> TicketChange:
        """Two-way sync: the ticket's status and last change ("changed_at", set by tests)."""
        self.provider._call("read_change", f"tickets/{ticket_id}", ticket_id)
        ticket = self._ticket(ticket_id)
        return TicketChange(ticket_id=ticket_id, status_id=ticket["status_id"], changed_at_iso=ticket.get("changed_at", ""))

    def update(self, ticket_id: str, *, status_id: str = "", priority_id: str = "") -> TicketRef:
        self._write("update", f"tickets/{ticket_id}", ticket_id, status_id, priority_id)
        ticket = self._ticket(ticket_id)
        if status_id and ticket["status_id"] != status_id:
            ticket.update(status_id=status_id, closed=status_id in tickets.closed_statuses)
        if priority_id and ticket["priority_id"] != priority_id:
            ticket["priority_id"] = priority_id
        self._lose_answer("update")
        return self._ref(ticket)

    def add_note(self, ticket_id: str, text: str, *, internal: bool = True) -> None:
        self._write("add_note", f"tickets/{ticket_id}/notes", ticket_id, text)
        tickets.notes[self._ticket(ticket_id)["id"]].append(text)
        self._lose_answer("add_note")

    def note_exists(self, ticket_id: str, marker: str) -> bool:
        self.provider._call("note_exists", f"tickets/{ticket_id}/notes", ticket_id, marker)
        return any(marker in text for text in tickets.notes.get(ticket_id, []))


# --- cached ticketing picklists ---------------------------------------------------------------------
# Picklist rows as a refresh from each PSA stores them, with the kinds of ticketing/fields.py.
# The Ticketing page and API read only these rows (never the PSA), so tests create them
# directly: cache_ticketing_lists(connection) for the connection's vendor.


def ticketing_item(item_id: str, name: str, parent_id: str = "", active: bool = True, **extra) -> dict:
    """One cached picklist item, as integrations.services.refresh_picklist stores it."""
    return {"id": item_id, "name": name, "parent_id": parent_id, "active": active, "extra": extra}


_i = ticketing_item
TICKETING_LISTS: dict[str, dict[tuple[str, str], list[dict]]] = {
    "connectwise": {
        ("boards", ""): [_i("1", "Help Desk"), _i("2", "Projects"), _i("3", "Old Board", active=False)],
        ("statuses", "1"): [
            _i("10", "New", "1", default=True), _i("11", "In Progress", "1"), _i("12", "Waiting Customer", "1"),
            _i("13", "Scheduled", "1"), _i("14", "Completed", "1", closed=True), _i("15", "Cancelled", "1", closed=True),
        ],
        ("statuses", "2"): [_i("20", "Open", "2"), _i("21", "Done", "2", closed=True)],
        ("priorities", ""): [
            _i("8", "Priority 1 - Emergency Response"), _i("7", "Priority 2 - Quick Response"),
            _i("6", "Priority 3 - Normal Response"), _i("5", "Priority 4 - Schedule Maintenance"),
        ],
        ("sources", ""): [_i("30", "Email"), _i("31", "Portal")],
        ("types", "1"): [_i("40", "Security"), _i("41", "Maintenance")],
        ("types", "2"): [_i("42", "Project Task")],
        ("subtypes", "1"): [_i("50", "Phishing", "1", type_ids=["40"]), _i("51", "Patching", "1", type_ids=["41"])],
        ("subtypes", "2"): [],
        ("items", "1"): [_i("60", "Triage", "1")],
        ("items", "2"): [],
        ("teams", "1"): [_i("70", "Service Team", "1", default=True), _i("71", "Escalations", "1", default=False)],
        ("teams", "2"): [_i("72", "Project Team", "2", default=False)],
    },
    "autotask": {
        ("queues", ""): [_i("29683", "Level I Support"), _i("29684", "Security Operations")],
        ("statuses", ""): [
            _i("1", "New", default=True), _i("8", "In Progress"), _i("7", "Waiting Customer"), _i("9", "On Hold"),
            _i("5", "Complete", closed=True), _i("10", "Cancelled"),
        ],
        ("priorities", ""): [_i("4", "Critical"), _i("1", "High"), _i("2", "Medium"), _i("3", "Low")],
        ("ticket_types", ""): [_i("1", "Service Request"), _i("2", "Incident")],
        ("sources", ""): [_i("2", "Phone"), _i("4", "Email"), _i("8", "Monitoring Alert")],
        ("issue_types", ""): [_i("10", "Security"), _i("11", "Network")],
        ("sub_issue_types", "10"): [_i("100", "Malware", "10"), _i("101", "Phishing", "10")],
        ("sub_issue_types", "11"): [_i("110", "Outage", "11")],
    },
    "halo": {
        ("ticket_types", ""): [_i("1", "Incident"), _i("3", "Alert")],
        ("statuses", "1"): [_i("1", "New", "1"), _i("2", "In Progress", "1"), _i("4", "Waiting on User", "1"),
                            _i("8", "On Hold", "1"), _i("9", "Closed", "1"), _i("20", "Cancelled", "1")],
        ("statuses", "3"): [_i("1", "New", "3"), _i("9", "Closed", "3")],
        ("priorities", "1"): [_i("1", "P1 - Critical", "1"), _i("2", "P2 - High", "1"), _i("3", "P3 - Medium", "1"),
                              _i("4", "P4 - Low", "1")],
        ("priorities", "3"): [_i("1", "Urgent", "3"), _i("4", "Low", "3")],
        ("teams", ""): [_i("5", "Service Desk"), _i("6", "Security")],
        ("outcomes", ""): [_i("7", "Private Note"), _i("8", "Email User")],
    },
}
del _i


def cache_ticketing_lists(connection, lists: dict | None = None, *, skip=()) -> None:
    """Store the vendor's lists (or `lists`) as freshly fetched Picklist rows, except `skip`."""
    from django.utils import timezone

    from integrations.models import Picklist

    for (kind, parent_id), items in (lists if lists is not None else TICKETING_LISTS[connection.vendor]).items():
        if (kind, parent_id) in skip:
            continue
        Picklist.objects.update_or_create(
            connection=connection, kind=kind, parent_id=parent_id,
            defaults={"items": items, "fetched_at": timezone.now(), "error": ""},
        )


# --- billing ----------------------------------------------------------------------------------------


@dataclass
class MemoryBillingBook:
    """The memory PSA's billing lines, keyed by (company_id, agreement_id, product_id) of the
    BillingTarget, and the script of what goes wrong: `blocked[key]` is raised on reading (a
    BlockedError or NotFoundError with the seeds' words), `read_failures[key]` / `write_failures[key]`
    transient errors (UnavailableError) on the next reads / writes, `write_errors[key]` a
    permanent error on writing. `on_write(key, quantity)` runs inside each write (concurrency
    tests). Reset it with `billing_book.reset()` (the billing tests' fixture does)."""

    lines: dict = field(default_factory=dict)  # key -> {"id": str, "quantity": int}
    blocked: dict = field(default_factory=dict)
    read_failures: dict = field(default_factory=dict)
    write_failures: dict = field(default_factory=dict)
    write_errors: dict = field(default_factory=dict)
    reads: list = field(default_factory=list)
    writes: list = field(default_factory=list)  # (key, before, after)
    prefetches: list = field(default_factory=list)  # [keys] per prefetch
    on_write: Callable | None = None
    next_id: int = 900

    def reset(self) -> None:
        self.__dict__.update(MemoryBillingBook().__dict__)

    def set(self, company_id: str, agreement_id: str, product_id: str, quantity: int) -> str:
        key = (str(company_id), str(agreement_id), str(product_id))
        line = self.lines.get(key)
        if line is None:
            self.next_id += 1
            line = self.lines[key] = {"id": str(self.next_id), "quantity": quantity}
        line["quantity"] = quantity
        return line["id"]

    def quantity(self, company_id: str, agreement_id: str, product_id: str) -> int | None:
        line = self.lines.get((str(company_id), str(agreement_id), str(product_id)))
        return None if line is None else line["quantity"]


billing_book = MemoryBillingBook()


def _billing_key(target) -> tuple[str, str, str]:
    return (target.company_id, target.agreement_id, target.product_id)


class MemoryBilling(BillingAdapter):
    def __init__(self, provider: MemoryProvider):
        self.provider = provider

    def prefetch(self, targets) -> None:
        keys = [_billing_key(t) for t in targets]
        self.provider._call("billing_prefetch", "billing/lines?many", len(keys))
        billing_book.prefetches.append(keys)

    def read_line(self, target):
        from integrations.base.billing import BillingLine

        key = _billing_key(target)
        self.provider._call("billing_read", f"agreements/{target.agreement_id}/lines?product={target.product_id}", key)
        billing_book.reads.append(key)
        if billing_book.read_failures.get(key):
            billing_book.read_failures[key] -= 1
            raise UnavailableError("Memory PSA answered 500 (a timeout has occurred); the hub will try again later.", status=500)
        if key in billing_book.blocked:
            raise billing_book.blocked[key]
        line = billing_book.lines.get(key)
        if line is None:
            return BillingLine(None, 0, f"Agreement {target.agreement_id} (no line yet)")
        return BillingLine(line["id"], line["quantity"], f"Agreement {target.agreement_id} / Line {line['id']}")

    def write_quantity(self, target, current, quantity: int):
        from integrations.base.billing import BillingLine

        key = _billing_key(target)
        self.provider._call("billing_write", f"agreements/{target.agreement_id}/lines", key, quantity)
        if billing_book.on_write is not None:
            billing_book.on_write(key, quantity)
        if billing_book.write_failures.get(key):
            billing_book.write_failures[key] -= 1
            raise UnavailableError("Memory PSA answered 503 to the write; the hub will try again later.", status=503)
        if key in billing_book.write_errors:
            raise billing_book.write_errors[key]
        before = billing_book.quantity(*key)
        line_id = billing_book.set(*key, quantity)
        billing_book.writes.append((key, before, quantity))
        return BillingLine(line_id, quantity, f"Agreement {target.agreement_id} / Line {line_id}")


# --- cached billing picklists -------------------------------------------------------------------------
# The billing page's lists as each PSA's refresh stores them (integrations/<vendor>/provider.py:
# ConnectWise catalog_items and agreements per company; Autotask services, contracts per company
# and contract_services per contract with extra["service_id"]; Halo items and licences per client).
# Ids follow the HTTP fakes' seeds, so a page test and a browser test read alike.

def billing_item(id_: str, name: str, parent_id: str = "", active: bool = True, **extra) -> dict:
    """One cached billing picklist item (extra may hold item_id, which ticketing_item cannot take)."""
    return {"id": id_, "name": name, "parent_id": parent_id, "active": active, "extra": extra}


_i = billing_item
BILLING_LISTS: dict[str, dict[tuple[str, str], list[dict]]] = {
    "connectwise": {
        ("catalog_items", ""): [
            _i("701", "MDR-SEAT: M365 AI Powered MDR (per user)", identifier="MDR-SEAT"),
            _i("702", "BACKUP-GB: Managed Backup (per GB)", identifier="BACKUP-GB"),
        ],
        ("agreements", "250"): [
            _i("3001", "Managed Security", "250", type="Managed Services", status="Active"),
            _i("3002", "Backup Services", "250", type="Managed Services", status="Active"),
        ],
        ("agreements", "254"): [
            _i("3004", "MSA Primary", "254", type="Managed Services", status="Active"),
            _i("3005", "MSA Legacy", "254", type="Managed Services", status="Active"),
        ],
        ("agreements", "257"): [],
    },
    "autotask": {
        ("services", ""): [
            _i("1", "Managed Security — per user", unit_price=4.5, period_type=1),
            _i("3", "Backup — per device", unit_price=7.0, period_type=1),
        ],
        ("contracts", "1"): [
            _i("100", "Acme Managed Services", "1", status=1, start_date="2024-01-01", end_date="2099-12-31",
               contract_number="K100"),
            _i("105", "Acme Email Security", "1", status=1, start_date="2024-06-01", end_date="2099-12-31",
               contract_number="K105"),
        ],
        ("contracts", "2"): [
            _i("101", "Globex Go-Live Contract", "2", status=1, start_date="2099-01-01", end_date="2099-12-31",
               contract_number="K101"),
        ],
        ("contracts", "3"): [
            _i("102", "Initech 2023 Contract", "3", status=1, start_date="2023-01-01", end_date="2023-12-31",
               contract_number="K102"),
        ],
        ("contract_services", "100"): [
            _i("5001", "Managed Security — per user", "100", service_id="1", unit_price=4.5,
               invoice_description="Managed Security — per user"),
            _i("5002", "Backup — per device", "100", service_id="3", unit_price=7.0, invoice_description=""),
        ],
        ("contract_services", "105"): [],
    },
    "halo": {
        ("items", ""): [
            _i("1", "Email Security (per user)", recurring=True, internal_reference="SEC-USER"),
            _i("2", "Domain Protection (per domain)", recurring=True, internal_reference="SEC-DOM"),
        ],
        ("licences", "1"): [
            _i("1", "Email Security", "1", count=10, item_id="1", site_id="-1", type=0),
            _i("4", "Domain Protection", "1", count=2, item_id="2", site_id="-1", type=0),
        ],
        ("licences", "3"): [],
    },
}
del _i


def cache_billing_lists(connection, lists: dict | None = None, *, skip=()) -> None:
    """Store the vendor's billing lists (or `lists`) as freshly fetched Picklist rows, except `skip`."""
    cache_ticketing_lists(connection, lists if lists is not None else BILLING_LISTS[connection.vendor], skip=skip)
