"""ConnectWise Manage as a hub provider: verify a link, probe permissions, read picklists.

config: site (login host), api_host, company_id, public_key, codebase (discovered),
client_id (the hub's, filled in by the service layer), scheme ("http" only for local fakes).
secrets: private_key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import quote

from integrations.base.billing import BillingFields
from integrations.base.budget import RequestBudget
from integrations.base.client import Transport
from integrations.base.errors import (
    AuthFailedError,
    BlockedError,
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
from integrations.connectwise import parse
from integrations.connectwise.billing import ConnectWiseBilling
from integrations.connectwise.client import DEFAULT_CODEBASE, PERMISSIONS, ConnectWiseClient
from integrations.base.ticketing import ChoiceField, TicketingFields
from integrations.connectwise.ticketing import ConnectWiseTicketing
from integrations.connectwise.webhooks import ConnectWiseStatusSync

COMPANY_FIELDS = "id,identifier,name,status,deletedFlag"
CONTACT_FIELDS = "id,firstName,lastName,company,inactiveFlag,communicationItems"


class ConnectWiseProvider(Provider):
    slug = "connectwise"
    name = "ConnectWise"
    display_name = "ConnectWise Manage"
    link_form = "integrations.connectwise.forms.ConnectWiseLinkForm"
    secret_fields = ("private_key",)
    config_fields = ("company_id", "site", "public_key")
    typed_host_fields = ("site", "api_host")
    host_fields = ("site", "api_host")
    hub_settings = {"client_id": "CONNECTWISE_CLIENT_ID"}
    picklist_kinds = {
        "boards": None,
        "statuses": "board",
        "priorities": None,
        "sources": None,
        "types": "board",
        "subtypes": "board",
        "items": "board",
        "teams": "board",
        "agreements": "company",
        "catalog_items": None,
    }
    # ConnectWise throttles around 1,000 requests a minute; the MSP's other integrations share it.
    budget = RequestBudget(max_requests=600, window_seconds=60, max_concurrent=6)
    ticketing_fields = TicketingFields(
        board=ChoiceField("board_id", "Service Board", "boards", required=True,
                          help="Tickets are created on this board. It needs an active Default Team."),
        board_noun="board",
        statuses_kind="statuses", statuses_parent="board_id",
        priorities_kind="priorities", priorities_parent="",
        default_priority=True,
        fields=(
            ChoiceField("type_id", "Type", "types", parent="board_id"),
            ChoiceField("subtype_id", "Subtype", "subtypes", parent="board_id"),
            ChoiceField("item_id", "Item", "items", parent="board_id"),
            ChoiceField("source_id", "Source", "sources"),
        ),
        default_team_kind="teams",
    )
    billing_fields = BillingFields(
        name="ConnectWise", product_noun="catalog item", agreement_noun="agreement", needs_agreement=True,
        product_kind="catalog_items", product_label="Catalog Item", company_label="Company", company_choice=False,
        agreement_kind="agreements", agreement_label="Agreement", overrides=True,
    )
    status_sync = ConnectWiseStatusSync()
    permissions = PERMISSIONS
    secret_headers = ("clientId",)  # the hub's own integration id
    credentials_hint = "the Company ID, Site URL, Public and Private keys (regenerate the keys on the API Member if needed)"

    def __init__(self, config: dict, secrets: dict, transport: Transport | None = None, **kwargs):
        super().__init__(config, secrets, transport, **kwargs)
        self._client: ConnectWiseClient | None = None

    # --- plumbing -------------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "http" if self.config.get("scheme") == "http" else "https"

    @property
    def site(self) -> str:
        return self.config.get("site", "")

    @property
    def api_host(self) -> str:
        return self.config.get("api_host") or parse.api_host_for(self.site)

    def client(self, codebase: str | None = None) -> ConnectWiseClient:
        if codebase is None and self._client is not None:
            return self._client
        if not self.config.get("client_id"):
            raise BlockedError(
                "The hub has no ConnectWise clientId configured (CONNECTWISE_CLIENT_ID); ask the hub's operator "
                "to set it."
            )
        if not self.site or not self.config.get("company_id"):
            raise InvalidError("Enter the Company ID and Site URL of your ConnectWise.", field="site")
        client = ConnectWiseClient(
            api_url=f"{self.scheme}://{self.api_host}",
            company_id=self.config["company_id"],
            public_key=self.config.get("public_key", ""),
            private_key=self.secrets.get("private_key", ""),
            client_id=self.config["client_id"],
            codebase=codebase or self.config.get("codebase") or DEFAULT_CODEBASE,
            transport=self.transport,
        )
        if codebase is None:
            self._client = client
        return client

    # --- linking --------------------------------------------------------------------------------

    def verify(self) -> VerifyResult:
        company_id = self.config.get("company_id", "")
        probe = self.client(DEFAULT_CODEBASE)
        try:
            info = probe.company_info(f"{self.scheme}://{self.site}", company_id)
        except NotFoundError:
            raise InvalidError(
                f"{self.site} did not answer like a ConnectWise site (no login/companyinfo). Check the Site "
                "URL/region.",
                field="site",
            ) from None
        if not isinstance(info, dict):
            raise AuthFailedError(
                f"Company ID not found: ConnectWise at {self.site} has no company “{company_id}”. Check the Company ID "
                "(the company name you type on the ConnectWise login screen) and the Site URL."
            )
        try:
            codebase = parse.check_codebase(info.get("Codebase") or DEFAULT_CODEBASE)
        except ValueError:
            raise UnavailableError(
                f"ConnectWise at {self.site} reported an unexpected codebase; try again later."
            ) from None
        client = self.client(codebase)
        try:
            client.system_info()
        except NotFoundError as error:
            # On the cloud, refused credentials often surface as 404 rather than 401.
            raise AuthFailedError(
                f"Authentication failed: {client.auth_hint} (ConnectWise answered 404, which on the cloud usually "
                "means the keys or Company ID were refused.)",
                status=error.status,
                vendor_message=error.vendor_message,
            ) from None
        self.config["codebase"] = codebase
        self._client = client
        return VerifyResult(
            display_name=info.get("CompanyName") or company_id,
            config_updates={"api_host": self.api_host, "codebase": codebase},
        )

    def check_permissions(self) -> PermissionReport:
        client = self.client()
        checks: list[PermissionCheck] = []

        def probe(key: str, permission: str, feature: str, fetch: Callable[[], object]) -> object:
            label, fix = PERMISSIONS[permission]
            try:
                result = fetch()
            except PermissionMissingError as error:
                message = f"ConnectWise API user does not have permission to access {error.which}."
                checks.append(PermissionCheck(key, label, feature, False, message, error.fix or fix))
                return None
            except (NotFoundError, InvalidError) as error:
                checks.append(PermissionCheck(key, label, feature, False, error.message, fix))
                return None
            checks.append(PermissionCheck(key, label, feature, True))
            return result

        one = {"page_size": 1, "max_pages": 1}
        probe("company.companies", "companies", "sync", lambda: list(client.companies(**one)))
        probe("company.contacts", "contacts", "sync", lambda: list(client.contacts(**one)))
        boards = probe(
            "service.boards",
            "boards",
            "tickets",
            lambda: list(client.boards(conditions="inactiveFlag=false and projectFlag=false", **one)),
        )
        # Statuses and types live on a board: probe them on the first one there is.
        board_id = parse.text_id(boards[0].get("id")) if boards else ""
        label, fix = PERMISSIONS["boards"]
        for key, fetch in (("service.statuses", client.board_statuses), ("service.types", client.board_types)):
            if board_id:
                probe(key, "boards", "tickets", lambda fetch=fetch: list(fetch(board_id, **one)))
            elif boards == []:
                checks.append(PermissionCheck(key, label, "tickets", True, "No active service board exists yet."))
            else:
                reason = "Could not be checked: Service Board access is missing."
                checks.append(PermissionCheck(key, label, "tickets", False, reason, fix))
        probe("service.priorities", "priorities", "tickets", lambda: list(client.priorities(**one)))
        probe("service.sources", "sources", "tickets", lambda: list(client.sources(**one)))
        probe("service.tickets", "tickets", "tickets", lambda: list(client.tickets(**one)))
        probe("finance.agreements", "agreements", "billing", lambda: list(client.agreements(**one)))
        probe("procurement.catalog", "catalog", "billing", lambda: list(client.catalog_items(**one)))
        probe("system.callbacks", "callbacks", "sync", lambda: list(client.callbacks(**one)))
        return PermissionReport(tuple(checks))

    # --- picklists ------------------------------------------------------------------------------

    def companies(self, search: str = "") -> Iterator[Company]:
        search = search.strip()
        conditions = parse.all_of("deletedFlag=false", f"name like {parse.quoted(f'%{search}%')}" if search else "")
        for record in self.client().companies(conditions=conditions, order_by="name asc", fields=COMPANY_FIELDS):
            yield parse.company(record)

    def contacts(self, company_id: str) -> list[Contact]:
        records = self.client().contacts(
            conditions=f"company/id={_number(company_id, 'company')} and inactiveFlag=false",
            order_by="lastName asc",
            fields=CONTACT_FIELDS,
        )
        return [parse.contact(record) for record in records]

    def picklist(self, kind: str, parent_id: str = "") -> list[PicklistItem]:
        if kind not in self.picklist_kinds:
            raise InvalidError(f"ConnectWise has no list called “{kind}”.", field="kind")
        needs = self.picklist_kinds[kind]
        if needs and not parent_id:
            raise InvalidError(f"Choose a {needs} first: ConnectWise keeps {kind} per {needs}.", field=needs)
        client = self.client()
        if kind == "boards":
            records = client.boards(conditions="inactiveFlag=false and projectFlag=false", order_by="name asc")
            return [parse.picklist_item(r) for r in records]
        if kind == "statuses":
            records = client.board_statuses(parent_id, conditions="inactive=false", order_by="sortOrder asc")
            return [
                parse.picklist_item(
                    r, parent_id, closed=bool(r.get("closedStatus")), default=bool(r.get("defaultFlag"))
                )
                for r in records
            ]
        if kind == "priorities":
            records = client.priorities(order_by="sortOrder asc")
            return [
                parse.picklist_item(r, default=bool(r.get("defaultFlag")), sort=r.get("sortOrder")) for r in records
            ]
        if kind == "sources":
            records = client.sources(order_by="name asc")
            return [parse.picklist_item(r, default=bool(r.get("defaultFlag"))) for r in records]
        if kind == "types":
            records = client.board_types(parent_id, conditions="inactiveFlag=false", order_by="name asc")
            return [parse.picklist_item(r, parent_id, default=bool(r.get("defaultFlag"))) for r in records]
        if kind == "subtypes":
            records = client.board_subtypes(parent_id, conditions="inactiveFlag=false", order_by="name asc")
            return [
                parse.picklist_item(r, parent_id, type_ids=[str(i) for i in r.get("typeAssociationIds") or []])
                for r in records
            ]
        if kind == "items":
            records = client.board_items(parent_id, conditions="inactiveFlag=false", order_by="name asc")
            return [parse.picklist_item(r, parent_id) for r in records]
        if kind == "teams":
            records = client.board_teams(parent_id, order_by="name asc")
            return [parse.picklist_item(r, parent_id, default=bool(r.get("defaultFlag"))) for r in records]
        if kind == "agreements":
            company = _number(parent_id, "company")
            conditions = f'company/id={company} and cancelledFlag=false and agreementStatus="Active"'
            return [parse.agreement(r) for r in client.agreements(conditions=conditions, order_by="name asc")]
        records = client.catalog_items(conditions="inactiveFlag=false", order_by="identifier asc")
        return [parse.catalog_item(r) for r in records]

    def board_has_default_team(self, board_id: str) -> bool:
        """Seed 000 step 3.5: without a default team every ticket on the board is refused."""
        return any(
            team.get("defaultFlag")
            for team in self.client().board_teams(board_id, conditions="defaultFlag=true", page_size=1, max_pages=1)
        )

    # --- capabilities ---------------------------------------------------------------------------

    # --- callbacks (two-way sync) ---------------------------------------------------------------

    def ensure_callback(self, url: str, *, board_id: str, url_prefix: str, description: str = "PSA hub: ticket updates") -> str:
        """Register a ticket callback for one board, replacing the hub's earlier ones (those
        whose url starts with `url_prefix`: a new token, or another board). Returns its id."""
        client = self.client()
        for entry in list(client.callbacks()):
            if str(entry.get("url") or "").startswith(url_prefix):
                self.remove_callback(str(entry.get("id")))
        created = client.create_callback({
            "description": description[:100], "url": url, "objectId": int(_number(board_id, "board_id")),
            "type": "ticket", "level": "board", "inactiveFlag": False,
        })
        return str(created.get("id") or "")

    def remove_callback(self, callback_id: str) -> None:
        """Delete one callback; one already gone is fine."""
        try:
            self.client().delete_callback(callback_id)
        except NotFoundError:
            pass

    def ticketing(self) -> ConnectWiseTicketing:
        return ConnectWiseTicketing(self.client(), ticket_url=self.ticket_url)

    def billing(self) -> ConnectWiseBilling:
        return ConnectWiseBilling(self.client())

    def ticket_url(self, ticket_id: str) -> str:
        if not ticket_id or not self.site:
            return ""
        # The v4_6_release router opens the tenant's current version, whatever its codebase.
        ticket = quote(str(ticket_id), safe="")
        company = quote(self.config.get("company_id", ""), safe="")
        return (
            f"{self.scheme}://{self.site}/v4_6_release/services/system_io/Service/fv_sr100_request.rails"
            f"?service_recid={ticket}&companyName={company}"
        )


def _number(value: str, field: str) -> str:
    text = str(value).strip()
    if not text.isdigit():
        raise InvalidError(f"“{value}” is not a ConnectWise record id.", field=field)
    return text
