"""ConnectWise Manage's REST API, one method per endpoint (fact sheet sections 1-7).

Every call carries Basic auth `companyId+publicKey:privateKey`, the hub's `clientId` and a
pinned model version, so a ConnectWise upgrade cannot change the shape of what we read.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

from integrations.base import pagination
from integrations.base.client import HttpClient, Transport
from integrations.base.errors import InvalidError, PermissionMissingError, PsaError, UnavailableError

API_VERSION = "2025.1"
ACCEPT = f"application/vnd.connectwise.com+json; version={API_VERSION}"
PAGE_SIZE = 1000  # ConnectWise's maximum since 2016.2
DEFAULT_CODEBASE = "v4_6_release/"  # routes to the tenant's current version in the cloud too

ROLE = "In ConnectWise: System > Security Roles > your API role > "

# Permission names in the seeds' words, and where in ConnectWise to grant them.
PERMISSIONS: dict[str, tuple[str, str]] = {
    "system_info": ("System > API Reports", ROLE + "System: set API Reports Inquire Level to All."),
    "companies": ("Companies > Company Maintenance", ROLE + "Companies: set Company Maintenance Inquire Level to All."),
    "company_statuses": ("Company > Company Status", ROLE + "Table Setup (customize): allow Company / Company Status."),
    "contacts": ("Companies > Contacts", ROLE + "Companies: set Contacts Inquire Level to All."),
    "boards": ("Service > Service Board", ROLE + "Table Setup (customize): allow Service / Service Board."),
    "priorities": ("Service > Priority", ROLE + "Table Setup (customize): allow Service / Priority."),
    "sources": ("Service > Source", ROLE + "Table Setup (customize): allow Service / Source."),
    "tickets": ("Service Desk > Service Tickets", ROLE + "Service Desk: set Service Tickets Inquire Level to All."),
    "tickets_add": (
        "Service Desk > Service Tickets (Add)",
        ROLE + "Service Desk: set Service Tickets Add Level to All.",
    ),
    "tickets_edit": (
        "Service Desk > Service Tickets (Edit)",
        ROLE + "Service Desk: set Service Tickets Edit Level to All, and Close service tickets Edit and Inquire "
        "Level to All.",
    ),
    "agreements": ("Finance > Agreements", ROLE + "Finance: set Agreements Inquire Level to All."),
    "agreements_edit": (
        "Finance > Agreements (Add, Edit)",
        ROLE + "Finance: set Agreements Add and Edit Level to All.",
    ),
    "catalog": ("Procurement > Product Catalog", ROLE + "Procurement: set Product Catalog Inquire Level to All."),
    # Which role setting governs callbacks is not documented (fact sheet section 10).
    "callbacks": (
        "System > Callbacks",
        ROLE + "System: set Table Setup Add, Delete and Inquire Level to All (callbacks are system setup).",
    ),
}


def permission_key(method: str, resource: str) -> str:
    """The PERMISSIONS key a request on `resource` (relative to apis/3.0/) needs."""
    path = "/".join(part for part in resource.lower().split("/") if part)
    write = method.upper() not in ("GET", "HEAD")
    if path.startswith("service/tickets"):
        if not write:
            return "tickets"
        return "tickets_add" if method.upper() == "POST" and path == "service/tickets" else "tickets_edit"
    prefixes = (
        ("service/priorities", "priorities"),
        ("service/sources", "sources"),
        ("service/boards", "boards"),
        ("company/companies/statuses", "company_statuses"),
        ("company/companies", "companies"),
        ("company/contacts", "contacts"),
        ("finance/agreements", "agreements_edit" if write else "agreements"),
        ("procurement/catalog", "catalog"),
        ("system/callbacks", "callbacks"),
        ("system/info", "system_info"),
    )
    for prefix, key in prefixes:
        if path.startswith(prefix):
            return key
    return ""


def resource_of(url_path: str) -> str:
    """`service/priorities` from `/v2025_1/apis/3.0/service/priorities`."""
    _, found, rest = url_path.partition("apis/3.0/")
    return rest if found else url_path.lstrip("/")


def _id(value) -> str:
    """A record id for a URL path; anything else would let a value change the path."""
    text = str(value).strip()
    if not text.isdigit():
        raise InvalidError(f"“{value}” is not a ConnectWise record id.", field="id")
    return text


class ConnectWiseClient(HttpClient):
    vendor = "ConnectWise"
    auth_hint = "Verify Company ID, Site URL, Public and Private keys. Regenerate keys if needed."
    url_hint = "Check the Site URL/region."

    def __init__(
        self,
        *,
        api_url: str,
        company_id: str,
        public_key: str,
        private_key: str,
        client_id: str,
        codebase: str = DEFAULT_CODEBASE,
        transport: Transport | None = None,
    ):
        self.company_id = company_id
        self.public_key = public_key
        self.codebase = codebase
        self._password = private_key
        self.client_id = client_id
        self._basic = base64.b64encode(f"{company_id}+{public_key}:{private_key}".encode()).decode()
        super().__init__(
            f"{api_url.rstrip('/')}/{codebase}apis/3.0/", transport, secrets=(private_key, client_id, self._basic)
        )

    # --- HttpClient hooks -----------------------------------------------------------------------

    def authorize(self, request: requests.Request) -> None:
        request.headers["Authorization"] = f"Basic {self._basic}"
        request.headers["clientId"] = self.client_id
        request.headers.setdefault("Accept", ACCEPT)

    def vendor_message(self, response: requests.Response) -> str:
        """CW's {code, message, errors[{code, message, field}]} as one line, e.g.
        "InvalidObject: ticket object is invalid - Cannot find default team for board specified (field: board)"."""
        try:
            body = response.json()
        except ValueError:
            return super().vendor_message(response)
        if not isinstance(body, dict):
            return super().vendor_message(response)
        # The 429 body says "error" where the others say "code".
        code = body.get("code") or body.get("error") or ""
        message = body.get("message") or ""
        text = ": ".join(str(part) for part in (code, message) if part)
        details = [
            str(item["message"]) + (f" (field: {item['field']})" if item.get("field") else "")
            for item in body.get("errors") or []
            if isinstance(item, dict) and item.get("message")
        ]
        if details:
            text = f"{text} - {'; '.join(details)}" if text else "; ".join(details)
        return text[:1000]

    def permission_for(self, method: str, path: str) -> tuple[str, str]:
        resource = resource_of(path)
        key = permission_key(method, resource)
        if key:
            return PERMISSIONS[key]
        return (
            f"ConnectWise {resource.split('?')[0]}",
            ROLE + "check that the API Member uses the Security Role set up for the hub and is active.",
        )

    def error_for(self, method: str, url: str, response: requests.Response) -> PsaError:
        error = super().error_for(method, url, response)
        said = error.vendor_message
        if "SSL is required" in said:
            # The cloud answers this on the login host: the api- prefix is missing.
            return InvalidError(
                f"ConnectWise refused the request (“SSL is required.”): the API must be called on the api- host "
                f"(e.g. api-na.myconnectwise.net). Check the Site URL/region. ConnectWise said: {said}",
                field="site",
                status=response.status_code,
                vendor_message=said,
            )
        if response.status_code == 403:
            which, fix = self.permission_for(method, urlsplit(url).path)
            return PermissionMissingError(
                f"ConnectWise API user does not have permission to access {which}. {fix}",
                which=which,
                fix=fix,
                status=403,
                vendor_message=said,
            )
        if isinstance(error, InvalidError):
            error.field = _first_field(response)
        return error

    # --- plumbing -------------------------------------------------------------------------------

    def _list(
        self,
        path: str,
        *,
        conditions: str = "",
        order_by: str = "",
        fields: str = "",
        page_size: int = PAGE_SIZE,
        max_pages: int | None = None,
    ) -> Iterator[dict]:
        """Every record of a list endpoint, page by page, following the Link header's rel=next."""
        params: dict[str, Any] = {}
        if conditions:
            params["conditions"] = conditions
        if order_by:
            params["orderBy"] = order_by
        if fields:
            params["fields"] = fields
        params["pageSize"] = page_size
        url, query, page = path, params, 1
        limit = min(max_pages or pagination.MAX_PAGES, pagination.MAX_PAGES)
        while True:
            response = self.request("GET", url, params=query)
            items = self.decode(response)
            if not isinstance(items, list):
                raise UnavailableError(f"ConnectWise answered {path} with something other than a list.")
            yield from items
            next_url = pagination.link_next(response.headers.get("Link"))
            if not next_url or not items or page >= limit:
                return
            page += 1
            if self._same_origin(next_url):
                url, query = next_url, None
            else:
                # Never send the credentials to a host the Link header names; count pages ourselves.
                url, query = path, {**params, "page": page}

    def _same_origin(self, url: str) -> bool:
        ours, theirs = urlsplit(self.base_url), urlsplit(url)
        return (ours.scheme, ours.hostname, ours.port) == (theirs.scheme, theirs.hostname, theirs.port)

    def _get(self, path: str, **params) -> Any:
        return self.decode(self.request("GET", path, params={k: v for k, v in params.items() if v} or None))

    def _send(self, method: str, path: str, body: Any, *, idempotent: bool | None = None) -> Any:
        return self.decode(self.request(method, path, json=body, idempotent=idempotent))

    # --- login and system -----------------------------------------------------------------------

    def company_info(self, site_url: str, company_id: str) -> dict | None:
        """GET https://{site}/login/companyinfo/{companyId}: no auth; JSON null for an unknown company."""
        url = f"{site_url.rstrip('/')}/login/companyinfo/{requests.utils.quote(company_id, safe='')}"
        return self.decode(self.request("GET", url, headers={"Accept": "application/json"}, authorize=False))

    def system_info(self) -> dict:
        return self._get("system/info")

    # --- companies and contacts -----------------------------------------------------------------

    def companies(self, **query) -> Iterator[dict]:
        return self._list("company/companies", **query)

    def contacts(self, **query) -> Iterator[dict]:
        return self._list("company/contacts", **query)

    # --- service setup --------------------------------------------------------------------------

    def boards(self, **query) -> Iterator[dict]:
        return self._list("service/boards", **query)

    def board_statuses(self, board_id, **query) -> Iterator[dict]:
        return self._list(f"service/boards/{_id(board_id)}/statuses", **query)

    def board_types(self, board_id, **query) -> Iterator[dict]:
        return self._list(f"service/boards/{_id(board_id)}/types", **query)

    def board_subtypes(self, board_id, **query) -> Iterator[dict]:
        return self._list(f"service/boards/{_id(board_id)}/subtypes", **query)

    def board_items(self, board_id, **query) -> Iterator[dict]:
        return self._list(f"service/boards/{_id(board_id)}/items", **query)

    def board_teams(self, board_id, **query) -> Iterator[dict]:
        return self._list(f"service/boards/{_id(board_id)}/teams", **query)

    def priorities(self, **query) -> Iterator[dict]:
        return self._list("service/priorities", **query)

    def sources(self, **query) -> Iterator[dict]:
        return self._list("service/sources", **query)

    # --- tickets --------------------------------------------------------------------------------

    def tickets(self, **query) -> Iterator[dict]:
        return self._list("service/tickets", **query)

    def ticket(self, ticket_id, *, fields: str = "") -> dict:
        return self._get(f"service/tickets/{_id(ticket_id)}", fields=fields)

    def create_ticket(self, body: dict) -> dict:
        return self._send("POST", "service/tickets", body)

    def patch_ticket(self, ticket_id, operations: list[dict]) -> dict:
        # Replacing fields with given values gives the same result when sent twice.
        return self._send("PATCH", f"service/tickets/{_id(ticket_id)}", operations, idempotent=True)

    def ticket_notes(self, ticket_id, **query) -> Iterator[dict]:
        return self._list(f"service/tickets/{_id(ticket_id)}/notes", **query)

    def create_ticket_note(self, ticket_id, body: dict) -> dict:
        return self._send("POST", f"service/tickets/{_id(ticket_id)}/notes", body)

    # --- agreements and catalog -----------------------------------------------------------------

    def agreements(self, **query) -> Iterator[dict]:
        return self._list("finance/agreements", **query)

    def agreement(self, agreement_id, *, fields: str = "") -> dict:
        return self._get(f"finance/agreements/{_id(agreement_id)}", fields=fields)

    def agreement_additions(self, agreement_id, **query) -> Iterator[dict]:
        return self._list(f"finance/agreements/{_id(agreement_id)}/additions", **query)

    def create_agreement_addition(self, agreement_id, body: dict) -> dict:
        return self._send("POST", f"finance/agreements/{_id(agreement_id)}/additions", body)

    def patch_agreement_addition(self, agreement_id, addition_id, operations: list[dict]) -> dict:
        # An absolute quantity is safe to send again after a lost answer.
        path = f"finance/agreements/{_id(agreement_id)}/additions/{_id(addition_id)}"
        return self._send("PATCH", path, operations, idempotent=True)

    def catalog_items(self, **query) -> Iterator[dict]:
        return self._list("procurement/catalog", **query)

    def catalog_item(self, item_id, *, fields: str = "") -> dict:
        return self._get(f"procurement/catalog/{_id(item_id)}", fields=fields)

    # --- callbacks ------------------------------------------------------------------------------

    def callbacks(self, **query) -> Iterator[dict]:
        return self._list("system/callbacks", **query)

    def create_callback(self, body: dict) -> dict:
        return self._send("POST", "system/callbacks", body)

    def delete_callback(self, callback_id) -> None:
        self._send("DELETE", f"system/callbacks/{_id(callback_id)}", None)


def _first_field(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    for item in (body.get("errors") if isinstance(body, dict) else None) or []:
        if isinstance(item, dict) and item.get("field"):
            return str(item["field"])
    return ""
