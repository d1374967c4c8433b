"""HaloProvider: link check, permission probes, customers and the picklists of a Halo instance.

Config (shown): tenant, resource_server (normalised by HaloLinkForm: https, no /api),
auth_server (optional), client_id, and optionally note_outcome_id / licence_type for the
ticketing and billing adapters. Secrets: client_secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import ClassVar
from urllib.parse import urlsplit

from integrations.base.billing import BillingFields
from integrations.base.budget import RequestBudget
from integrations.base.client import Transport
from integrations.base.errors import (
    InvalidError,
    NotFoundError,
    PermissionMissingError,
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
from integrations.halo import parse
from integrations.halo.auth import HaloAuth, MemoryTokenStore, TokenStore, token_url
from integrations.halo.billing import HaloBilling
from integrations.base.ticketing import ChoiceField, TicketingFields
from integrations.halo.client import PERMISSION_FIX, HaloClient, permission_label
from integrations.halo.ticketing import HaloTicketing
from integrations.halo.webhooks import HaloStatusSync

WEBHOOK_NAME = "PSA hub: ticket updates"
# Halo's numeric enums for webhooks are UNCONFIRMED (fact sheet section 8): 0 = a standard
# (not runbook) webhook and 1 = basic authentication are one client's reading (S12).
WEBHOOK_TYPE_STANDARD = 0
WEBHOOK_BASIC_AUTHENTICATION = 1

# (key, area, feature, entity path, list key). Only reads can be probed without writing;
# the Edit permissions show themselves on the first write (the test ticket, the first sync).
_PROBES = (
    ("tickets.read", "tickets", "tickets", "Tickets", "tickets"),
    ("customers.read", "customers", "tickets", "Client", "clients"),
    ("items.read", "items", "billing", "Item", "items"),
    ("contracts.read", "contracts", "billing", "ClientContract", "contracts"),
    ("invoices.read", "invoices", "billing", "Invoice", "invoices"),
    ("softwarelicensing.read", "softwarelicensing", "billing", "SoftwareLicence", "licences"),
    ("webhooks.admin", "webhooks", "sync", "Webhook", "webhooks"),
)


class HaloProvider(Provider):
    slug = "halo"
    name = "Halo PSA"
    display_name = "Halo PSA"
    link_form = "integrations.halo.forms.HaloLinkForm"
    secret_fields: ClassVar[tuple[str, ...]] = ("client_secret",)
    config_fields: ClassVar[tuple[str, ...]] = ("tenant", "resource_server", "auth_server", "client_id")
    typed_host_fields = ("resource_server", "auth_server")
    host_fields = ("resource_server", "auth_server")
    picklist_kinds: ClassVar[dict[str, str | None]] = {
        "ticket_types": None,
        "statuses": "ticket_type",  # optional: without it, every ticket status
        "priorities": "ticket_type",  # the priorities of the ticket type's SLA
        "teams": None,
        "outcomes": None,  # for notes (actions)
        "items": None,
        "licences": "company",
        "sites": "company",
    }
    # About 700 requests per 5 minutes (fact sheet); the hub keeps below it.
    budget = RequestBudget(max_requests=600, window_seconds=300, max_concurrent=4)
    ticketing_fields = TicketingFields(
        board=ChoiceField("board_id", "Ticket Type", "ticket_types", required=True,
                          help="Its allowed statuses and its SLA's priorities are offered below."),
        board_noun="ticket type",
        statuses_kind="statuses", statuses_parent="board_id",
        priorities_kind="priorities", priorities_parent="board_id",
        fields=(
            ChoiceField("team_id", "Team", "teams"),
            ChoiceField("extra.note_outcome_id", "Outcome for notes", "outcomes",
                        help="Halo needs an outcome on every action; the private note outcome is usual."),
        ),
    )
    billing_fields = BillingFields(
        name="Halo", product_noun="item", agreement_noun="licence", needs_agreement=False,
        product_kind="items", product_label="Item", company_label="Client", company_choice=False,
        line_kind="licences", line_label="Software Licence", line_parent="company",
        line_help="The client's software licence whose count the hub keeps equal to the tenant's units.",
    )
    status_sync = HaloStatusSync()
    permissions = {key: (permission_label("GET", area), PERMISSION_FIX) for key, area, *_ in _PROBES}
    credentials_hint = "the Tenant, Resource Server (without /api), Client ID and Client Secret (regenerate the secret if needed)"
    expiring_secret = "client secret"

    def __init__(
        self,
        config: dict,
        secrets: dict,
        transport: Transport | None = None,
        *,
        token_store: TokenStore | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(config, secrets, transport, token_store=token_store)
        self.resource_server = (self.config.get("resource_server") or "").rstrip("/")
        self.auth_server = (self.config.get("auth_server") or "").rstrip("/")
        self.token_store = token_store if token_store is not None else MemoryTokenStore()
        self.clock = clock
        self._client: HaloClient | None = None

    @property
    def client(self) -> HaloClient:
        if self._client is None:
            secret = self.secrets.get("client_secret", "")
            client = HaloClient(self.resource_server, self.transport, secrets=[secret])
            client.auth = HaloAuth(
                client,
                token_url=token_url(self.auth_server, self.resource_server),
                tenant=self.config.get("tenant", "") or "",
                client_id=self.config.get("client_id", "") or "",
                client_secret=secret,
                store=self.token_store,
                clock=self.clock,
            )
            self._client = client
        return self._client

    # --- link --------------------------------------------------------------------------------------

    def verify(self) -> VerifyResult:
        updates = {}
        if not self.auth_server:
            discovered = self._discover_auth_server()
            if discovered and discovered != self.resource_server + "/auth":
                self.auth_server = discovered
                self._client = None
                updates["auth_server"] = discovered
        try:
            agent = self.client.agent_me()
        except NotFoundError as exc:
            raise InvalidError(
                f"No Halo API answered at {self.resource_server}/api. Check the Resource Server URL: it is "
                "shown under Configuration > Integrations > HaloPSA API; enter it without /api.",
                field="resource_server",
                status=exc.status,
            ) from None
        host = urlsplit(self.resource_server).hostname or self.resource_server
        who = agent.get("name") or agent.get("email") or ""
        return VerifyResult(display_name=f"{host} (agent {who})" if who else host, config_updates=updates)

    def _discover_auth_server(self) -> str:
        """Where AuthInfo says tokens come from, or "" to use Halo's default (<resource>/auth).
        AuthInfo is optional on the way: an old or locked-down instance may not answer it."""
        try:
            info = self.client.auth_info()
        except (NotFoundError, InvalidError, PermissionMissingError):
            return ""
        except UnavailableError as exc:
            if exc.status is None:
                raise  # the host itself is unreachable: the token call would fail the same way
            return ""
        url = info.get("auth_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            return ""
        url = url.strip().rstrip("/")
        return url[: -len("/token")] if url.endswith("/token") else url

    def check_permissions(self) -> PermissionReport:
        checks = []
        for key, area, feature, path, list_key in _PROBES:
            label = permission_label("GET", area)
            try:
                if area == "webhooks":
                    self.client.list_webhooks()  # the Webhook list takes no count
                else:
                    self.client.peek(path, list_key)
            except PermissionMissingError as exc:
                checks.append(PermissionCheck(key, label, feature, ok=False, message=exc.message, fix=exc.fix))
            except NotFoundError:
                checks.append(
                    PermissionCheck(
                        key,
                        label,
                        feature,
                        ok=False,
                        message=f"This Halo instance does not offer /api/{path}; it may be an older version.",
                    )
                )
            else:
                checks.append(PermissionCheck(key, label, feature, ok=True))
        return PermissionReport(tuple(checks))

    # --- customers -------------------------------------------------------------------------------

    def companies(self, search: str = "") -> Iterator[Company]:
        for row in self.client.list_clients(search):
            if not row.get("inactive"):
                yield parse.company(row)

    def contacts(self, company_id: str) -> list[Contact]:
        client_id = _id(company_id, "company_id")
        return [parse.contact(row) for row in self.client.list_users(client_id) if not row.get("inactive")]

    # --- picklists -------------------------------------------------------------------------------

    def picklist(self, kind: str, parent_id: str = "") -> list[PicklistItem]:
        client = self.client
        if kind == "ticket_types":
            return [parse.ticket_type(row) for row in client.list_ticket_types()]
        if kind == "statuses":
            parent = _id(parent_id, "parent_id") if parent_id else None
            return [parse.status(row, parent_id) for row in client.list_statuses(parent)]
        if kind == "priorities":
            return self._priorities(parent_id)
        if kind == "teams":
            return [parse.team(row) for row in client.list_teams()]
        if kind == "outcomes":
            return [parse.outcome(row) for row in client.list_outcomes()]
        if kind == "items":
            return [parse.item(row) for row in client.list_items()]
        if kind == "licences":
            return [parse.licence(row) for row in client.list_licences(_id(parent_id, "parent_id")) if not row.get("deleted")]
        if kind == "sites":
            return [parse.site(row) for row in client.list_sites(_id(parent_id, "parent_id"))]
        raise ValueError(f"Halo has no picklist {kind!r}; known: {', '.join(self.picklist_kinds)}")

    def _priorities(self, ticket_type_id: str) -> list[PicklistItem]:
        """Priorities mean something only within an SLA, so a ticket type offers those of its
        SLA, and none when it has no SLA (then tickets are sent without a priority)."""
        if not ticket_type_id:
            return [parse.priority(row, parse.text(row.get("slaid") or "")) for row in self.client.list_priorities()]
        sla_id = parse.ticket_type_sla_id(self.client.get_ticket_type(_id(ticket_type_id, "parent_id")))
        if sla_id is None:
            return []
        rows = self.client.list_priorities(sla_id)
        # In case a version ignores the slaid filter, keep only this SLA's rows when they say.
        rows = [row for row in rows if parse.as_int(row.get("slaid")) in (None, sla_id)]
        return [parse.priority(row, ticket_type_id) for row in rows]

    # --- webhooks (two-way sync) -----------------------------------------------------------------

    def ensure_webhook(
        self, url: str, *, username: str, password: str, events: list[dict] | tuple = (), name: str = WEBHOOK_NAME
    ) -> str:
        """Create, or bring up to date, the webhook that calls `url`; returns its id (a GUID).

        Halo sends Basic credentials with each delivery (S7). `events` are Halo notification
        objects; their `eventno` values are UNCONFIRMED, so the caller reads them from Halo
        (GET Webhook/{id}?includedetails=true on a webhook made in the UI) and passes them on.
        """
        self.client.add_secret(password)
        existing = next((row for row in self.client.list_webhooks() if row.get("url") == url), None)
        webhook: dict = {
            "name": name,
            "url": url,
            "type": WEBHOOK_TYPE_STANDARD,
            "content_type": "application/json",
            "authentication_type": WEBHOOK_BASIC_AUTHENTICATION,
            "basic_username": username,
            "basic_password": password,
            "active": True,
        }
        if events:
            webhook["events"] = list(events)
        if existing is not None:
            webhook = {"id": existing["id"], **webhook}
        saved = parse.one(self.client.post_webhooks([webhook]))
        return parse.text(saved.get("id") or (existing or {}).get("id") or "")

    def remove_webhook(self, webhook_id: str) -> None:
        """Delete the hub's webhook; one already gone is fine."""
        try:
            self.client.delete_webhook(webhook_id)
        except NotFoundError:
            pass

    # --- capabilities ----------------------------------------------------------------------------

    def ticketing(self) -> HaloTicketing:
        return HaloTicketing(
            self.client,
            ticket_url=self.ticket_url,
            note_outcome_id=parse.as_int(self.config.get("note_outcome_id")),
        )

    def billing(self) -> HaloBilling:
        return HaloBilling(self.client, licence_type=parse.as_int(self.config.get("licence_type")))

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.resource_server}/ticket?id={ticket_id}" if ticket_id else ""


def _id(value: str, field: str) -> int:
    number = parse.as_int(value)
    if number is None:
        raise InvalidError(f"{value!r} is not a Halo id.", field=field)
    return number
