"""Autotask as the hub sees it: linking, permission checks, companies, contacts, picklists.

Config (shown): `username`, `zone_discovery_url` (filled by the service layer from settings),
and what verification discovers: `zone_url`, `web_url`, `zone_name`.
Secrets: `secret` (the API user's password) and `integration_code` (the Tracking Identifier).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date

from integrations.autotask import parse, zones
from integrations.autotask.billing import AutotaskBilling
from integrations.autotask.client import AutotaskClient, query_all, query_body
from integrations.autotask.ticketing import AutotaskTicketing
from integrations.autotask.webhooks import AutotaskStatusSync
from integrations.base.billing import BillingFields
from integrations.base.budget import RequestBudget
from integrations.base.client import Transport
from integrations.base.errors import (
    AuthFailedError,
    BlockedError,
    InvalidError,
    NotFoundError,
    PermissionMissingError,
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
from integrations.base.ticketing import ChoiceField, TicketingFields

IN_LIMIT = 500
RECURRING_SERVICE = 7  # contractType of Recurring Service contracts (ContractServicesEntity.htm)
TICKET_PICKLISTS = {
    "queues": "queueID",
    "statuses": "status",
    "priorities": "priority",
    "ticket_types": "ticketType",
    "sources": "source",
    "issue_types": "issueType",
    "sub_issue_types": "subIssueType",
    "ticket_categories": "ticketCategory",
}
NOTE_PICKLISTS = {"note_types": "noteType", "note_publish": "publish"}
BOTH_MODULES = "401 Unauthorized. Verify the security level grants access to both modules."


def _all_ids() -> dict:
    return {"op": "gte", "field": "id", "value": 0}


# (key, label, feature, entity, what to call). Labels are the seed's words where it has them.
PROBES = (
    ("companies", "Companies — read access to Companies (CRM)", "sync", "Companies", "query"),
    ("contacts", "Contacts — read access to Contacts (CRM)", "tickets", "Contacts", "query"),
    ("tickets", "Tickets — read access to Tickets (Service Desk)", "tickets", "Tickets", "query"),
    ("tickets.fields", "Tickets — queues, statuses, priorities and other picklists", "tickets", "Tickets", "fields"),
    ("ticket_notes", "Ticket Notes — read access to Ticket Notes", "tickets", "TicketNotes", "query"),
    ("contracts", "Contracts — read and write access to Recurring Service Contracts", "billing", "Contracts", "query"),
    ("contract_services", "Contracts — services on recurring contracts", "billing", "ContractServices", "query"),
    ("contract_service_units", "Contracts — units of contract services", "billing", "ContractServiceUnits", "query"),
    ("services", "Services — read access to Services within those contracts", "billing", "Services", "query"),
)


class AutotaskProvider(Provider):
    slug = "autotask"
    name = "Autotask"
    display_name = "Autotask"
    link_form = "integrations.autotask.forms.AutotaskLinkForm"
    # The Username stays shown (config): it is an identifier, not a credential on its own; zone
    # discovery takes it without authentication, and the admin needs to see which API user is
    # linked to find it in Autotask when it is locked or its security level needs a change.
    secret_fields = ("secret", "integration_code")
    config_fields = ("username",)
    host_fields = ("zone_url",)  # discovered from the username, never typed
    hub_settings = {"zone_discovery_url": "AUTOTASK_ZONE_DISCOVERY_URL"}
    # Companies are not a picklist here: the service layer imports them through companies().
    picklist_kinds = {
        **{kind: None for kind in TICKET_PICKLISTS},
        "sub_issue_types": "issue_type",
        **{kind: None for kind in NOTE_PICKLISTS},
        "contracts": "company",
        "contract_services": "contract",
        "services": None,
    }
    # 10,000 requests an hour per database and 3 at once per entity endpoint (fact sheet); a
    # quarter of the hour's budget is left to the MSP's other integrations.
    budget = RequestBudget(max_requests=7_500, window_seconds=3600, max_concurrent=3)
    ticketing_fields = TicketingFields(
        board=ChoiceField("board_id", "Queue", "queues", required=True, help="New tickets go to this queue."),
        board_noun="queue",
        statuses_kind="statuses", statuses_parent="",
        priorities_kind="priorities", priorities_parent="",
        new_status=True,
        fields=(
            ChoiceField("type_id", "Ticket Type", "ticket_types"),
            ChoiceField("source_id", "Source", "sources"),
            ChoiceField("extra.issue_type_id", "Issue Type", "issue_types"),
            ChoiceField("extra.sub_issue_type_id", "Sub-issue Type", "sub_issue_types", parent="extra.issue_type_id"),
        ),
    )
    billing_fields = BillingFields(
        name="Autotask", product_noun="service", agreement_noun="contract", needs_agreement=True,
        product_kind="services", product_label="Service", company_label="Customer (Autotask Company)",
        company_choice=True, agreement_kind="contracts", agreement_label="Contract", line_kind="contract_services",
        line_label="Service line item", line_parent="agreement",
        line_help="The contract's service line that carries the units. Units change through a contract service "
        "adjustment for the difference, effective today.",
        line_product_key="service_id",
    )
    status_sync = AutotaskStatusSync()
    permissions = {key: (label, parse.FIX.format(module=entity)) for key, label, _, entity, _ in PROBES}
    secret_headers = ("Secret", "ApiIntegrationCode", "UserName")
    credentials_hint = "the Username, Secret and Tracking Identifier of the API user (Security Level “API User (system)”)"

    def __init__(
        self,
        config: dict,
        secrets: dict,
        transport: Transport | None = None,
        *,
        today: Callable[[], date] | None = None,
        **kwargs,
    ):
        super().__init__(config, secrets, transport, **kwargs)
        self.today = today or date.today
        self._client: AutotaskClient | None = None
        # One entityInformation/fields answer serves every ticket picklist kind.
        self._fields: dict[str, dict] = {}

    # --- plumbing --------------------------------------------------------------------------------

    @property
    def username(self) -> str:
        return (self.config.get("username") or self.secrets.get("username") or "").strip()

    def discover_zone(self) -> zones.Zone:
        return zones.discover(
            self.username,
            discovery_url=self.config.get("zone_discovery_url") or zones.DEFAULT_DISCOVERY_URL,
            transport=self.transport,
        )

    @property
    def client(self) -> AutotaskClient:
        if self._client is None:
            zone_url = self.config.get("zone_url")
            if not zone_url:
                zone = self.discover_zone()
                zone_url = zone.url
                self.config.update(zone_url=zone.url, web_url=zone.web_url, zone_name=zone.name)
            self._client = AutotaskClient(
                zones.api_url(zone_url),
                username=self.username,
                secret=self.secrets.get("secret", ""),
                integration_code=self.secrets.get("integration_code", ""),
                transport=self.transport,
            )
        return self._client

    def _entity_fields(self, entity: str) -> dict:
        if entity not in self._fields:
            self._fields[entity] = self.client.entity_fields(entity)
        return self._fields[entity]

    # --- link --------------------------------------------------------------------------------------

    def verify(self) -> VerifyResult:
        labels = {"secret": "Password", "integration_code": "Tracking Identifier"}
        missing = [label for key, label in labels.items() if not self.secrets.get(key)]
        if missing:
            raise AuthFailedError(f"Authentication failed: enter the {' and '.join(missing)} of the Autotask API user.")
        zone = self.discover_zone()
        self.config.update(zone_url=zone.url, web_url=zone.web_url, zone_name=zone.name)
        self._client = None
        # The cheapest call that proves all three values: 401 = Secret, 500 IntegrationCode =
        # Tracking Identifier (the zone call already proved the Username).
        self.client.query("Companies", query_body([_all_ids()], max_records=1, include_fields=["id"]))
        return VerifyResult(
            display_name=f"Autotask {zone.name}".strip() if zone.name else "Autotask",
            config_updates={"zone_url": zone.url, "web_url": zone.web_url, "zone_name": zone.name},
        )

    def check_permissions(self) -> PermissionReport:
        checks: list[PermissionCheck] = []
        authenticated = False
        for key, label, feature, entity, call in PROBES:
            try:
                if call == "fields":
                    self._entity_fields(entity)
                else:
                    self.client.query(entity, query_body([_all_ids()], max_records=1, include_fields=["id"]))
            except PermissionMissingError as exc:
                checks.append(PermissionCheck(key, label, feature, ok=False, message=exc.message, fix=exc.fix))
                continue
            except (InvalidError, BlockedError, NotFoundError) as exc:
                # Autotask answered, but not with data: report it on this line, probe the rest.
                checks.append(PermissionCheck(key, label, feature, ok=False, message=exc.message))
                continue
            except AuthFailedError as exc:
                # Seed 001 reports a missing module as "401 Unauthorized"; once another call went
                # through with the same credentials, that is the likely meaning of a 401.
                if not authenticated or exc.status != 401:
                    raise
                module = parse.module_for(entity.lower())
                fix = parse.FIX.format(module=module)
                if feature == "billing":
                    message = f"{module}: {BOTH_MODULES}"
                else:
                    message = f"{module}: 401 Unauthorized. Verify the security level grants access to {module}."
                checks.append(PermissionCheck(key, label, feature, ok=False, message=message, fix=fix))
                continue
            authenticated = True
            checks.append(PermissionCheck(key, label, feature, ok=True))
        return PermissionReport(tuple(checks))

    # --- picklists ---------------------------------------------------------------------------------

    def companies(self, search: str = "") -> Iterator[Company]:
        # Company 0 exists in every database and is commonly the MSP's own organisation: never a tenant.
        filters = [{"op": "eq", "field": "isActive", "value": True}, {"op": "gt", "field": "id", "value": 0}]
        if search.strip():
            filters.append({"op": "contains", "field": "companyName", "value": search.strip()})
        body = query_body(filters, include_fields=["id", "companyName", "companyNumber", "isActive"])
        for record in query_all(self.client, "Companies", body):
            if parse.field(record, "id") not in (0, None):
                yield parse.company(record)

    def contacts(self, company_id: str) -> list[Contact]:
        filters = [
            {"op": "eq", "field": "companyID", "value": _int(company_id, "company")},
            # Contacts.isActive is an integer (0/1), unlike Companies.isActive.
            {"op": "eq", "field": "isActive", "value": 1},
        ]
        body = query_body(filters, include_fields=["id", "companyID", "firstName", "lastName", "emailAddress"])
        return [parse.contact(record) for record in query_all(self.client, "Contacts", body)]

    def picklist(self, kind: str, parent_id: str = "") -> list[PicklistItem]:
        if kind in TICKET_PICKLISTS:
            return parse.picklist(self._entity_fields("Tickets"), TICKET_PICKLISTS[kind], parent_id=parent_id)
        if kind in NOTE_PICKLISTS:
            return parse.picklist(self._entity_fields("TicketNotes"), NOTE_PICKLISTS[kind])
        if kind == "contracts":
            return self.contracts(parent_id)
        if kind == "contract_services":
            return self.contract_services(parent_id)
        if kind == "services":
            return self.services()
        raise InvalidError(f"Autotask has no picklist called {kind!r}.", field="kind")

    def contracts(self, company_id: str) -> list[PicklistItem]:
        filters = [
            {"op": "eq", "field": "companyID", "value": _int(company_id, "company")},
            {"op": "eq", "field": "contractType", "value": RECURRING_SERVICE},
        ]
        fields = ["id", "contractName", "contractNumber", "companyID", "status", "startDate", "endDate"]
        body = query_body(filters, include_fields=fields)
        return [parse.contract_item(record) for record in query_all(self.client, "Contracts", body)]

    def contract_services(self, contract_id: str) -> list[PicklistItem]:
        """The service lines of a contract, named after their Service. A line's id is the
        ContractService id; `extra["service_id"]` is what billing maps (BillingTarget.product_id)."""
        body = query_body([{"op": "eq", "field": "contractID", "value": _int(contract_id, "contract")}])
        lines = list(query_all(self.client, "ContractServices", body))
        service_ids = sorted({parse.field(line, "serviceID") for line in lines} - {None})
        names = {}
        # An `in` list counts as OR conditions, and Autotask allows at most 500 of them.
        for start in range(0, len(service_ids), IN_LIMIT):
            chunk = service_ids[start : start + IN_LIMIT]
            services_body = query_body([{"op": "in", "field": "id", "value": chunk}], include_fields=["id", "name"])
            for service in query_all(self.client, "Services", services_body):
                names[parse.field(service, "id")] = parse.field(service, "name") or ""
        items = []
        for line in lines:
            service_id = parse.field(line, "serviceID")
            items.append(
                PicklistItem(
                    id=parse.text_id(parse.field(line, "id")),
                    name=names.get(service_id) or f"Service {service_id}",
                    parent_id=parse.text_id(parse.field(line, "contractID")),
                    extra={
                        "service_id": parse.text_id(service_id),
                        "unit_price": parse.field(line, "unitPrice"),
                        "invoice_description": parse.field(line, "invoiceDescription") or "",
                    },
                )
            )
        return items

    def services(self) -> list[PicklistItem]:
        filters = [{"op": "eq", "field": "isActive", "value": True}]
        body = query_body(filters, include_fields=["id", "name", "unitPrice", "periodType"])
        return [
            PicklistItem(
                id=parse.text_id(parse.field(s, "id")),
                name=parse.field(s, "name") or "",
                extra={"unit_price": parse.field(s, "unitPrice"), "period_type": parse.field(s, "periodType")},
            )
            for s in query_all(self.client, "Services", body)
        ]

    # --- capabilities ------------------------------------------------------------------------------

    def ticketing(self) -> AutotaskTicketing:
        return AutotaskTicketing(
            self.client, ticket_url=self.ticket_url, note_fields=lambda: self._entity_fields("TicketNotes")
        )

    def billing(self) -> AutotaskBilling:
        return AutotaskBilling(self.client, today=self.today)

    def ticket_url(self, ticket_id: str) -> str:
        web_url = self.config.get("web_url") or ""
        if not web_url or not ticket_id:
            return ""
        web_url = web_url if web_url.endswith("/") else web_url + "/"
        return f"{web_url}Autotask/AutotaskExtend/ExecuteCommand.aspx?Code=OpenTicketDetail&TicketID={ticket_id}"


def _int(value, what: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise InvalidError(f"{value!r} is not an Autotask {what} id.", field=what) from None

