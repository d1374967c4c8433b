"""HaloClient: one method per Halo endpoint the hub uses, over the one HTTP path.

Halo-specific behaviour lives in the hooks: the bearer token on each request (and one fresh
token after a 401), Halo's several error body shapes, and which application permission a
refused path needs, named as Halo's Permissions tab names it (seed 002).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

from integrations.base import pagination
from integrations.base.client import HttpClient, Transport
from integrations.base.errors import (
    AuthFailedError,
    InvalidError,
    NotFoundError,
    PermissionMissingError,
    PsaError,
)
from integrations.halo import parse
from integrations.halo.auth import HaloAuth

# GET /api/Tickets documents 100 as the maximum page size; the other lists are paged the same way.
PAGE_SIZE = 100

AUTH_HINT = "Verify Tenant, Resource Server (without /api), Client ID, and Client Secret. Regenerate credentials if needed."
PERMISSION_FIX = (
    "In Halo: Configuration > Integrations > HaloPSA API > View Applications > (the hub's application) > "
    "Permissions, and the agent's Permissions tab (Configuration > Teams & Agents > Agents); the agent must be "
    "active and API-only."
)

# First path segment (lower case: Halo's routes are case-insensitive) -> the permission area of
# the API application's Permissions tab. Which area guards the ticket configuration lists is
# UNCONFIRMED; "tickets" is our reading (fact sheet section 10).
_AREAS = {
    "tickets": "tickets",
    "actions": "tickets",
    "tickettype": "tickets",
    "status": "tickets",
    "priority": "tickets",
    "sla": "tickets",
    "team": "tickets",
    "outcome": "tickets",
    "client": "customers",
    "site": "customers",
    "users": "customers",
    "item": "items",
    "clientcontract": "contracts",
    "invoice": "invoices",
    "recurringinvoice": "invoices",
    "softwarelicence": "softwarelicensing",
    "licencechange": "softwarelicensing",
    "webhook": "webhooks",
    "webhookevent": "webhooks",
}
# The agent's own feature access that must allow the same (seed 002's agent setup).
_AGENT_ACCESS = {
    "tickets": "Tickets access (Read and Modify)",
    "customers": "Customers access (Read Only or more)",
    "softwarelicensing": "Software Licencing access (Read and Modify)",
    "items": "Products access (Read Only or more)",
    "contracts": "Contracts access",
    "invoices": "Invoices access",
    "webhooks": "an administrator role",
}
_FIELD_PATH = re.compile(r"^\[\d+\]\.(.+)$")
_OAUTH_REFUSALS = frozenset({"invalid_client", "unauthorized_client", "invalid_grant", "invalid_request", "invalid_scope"})


def permission_label(method: str, area: str) -> str:
    if area == "webhooks":
        return "Admin: webhooks"
    return f"{'Read' if method.upper() in ('GET', 'HEAD') else 'Edit'}: {area}"


class HaloClient(HttpClient):
    vendor = "Halo PSA"
    auth_hint = AUTH_HINT

    def __init__(
        self,
        resource_server: str,
        transport: Transport | None = None,
        secrets: Iterable[str] = (),
        auth: HaloAuth | None = None,
    ):
        self.resource_server = resource_server.rstrip("/")
        super().__init__(self.resource_server + "/api/", transport, secrets)
        self.auth = auth

    def add_secret(self, value: str) -> None:
        """Redact `value` (a token issued during this client's life) wherever it shows up."""
        if value and value not in self.secrets:
            self.secrets.append(value)

    # --- hooks ------------------------------------------------------------------------------------

    def authorize(self, request: requests.Request) -> None:
        if self.auth is not None:
            request.headers["Authorization"] = f"Bearer {self.auth.token()}"

    def request(self, method: str, path: str, *, authorize: bool = True, **kwargs) -> requests.Response:
        if not authorize or self.auth is None:
            return super().request(method, path, authorize=authorize, **kwargs)
        # Fetched here, outside the retry below, so a refused token request is never retried.
        token = self.auth.token()
        try:
            return super().request(method, path, authorize=True, **kwargs)
        except AuthFailedError:
            # The token may have been revoked or expired early: one fresh token, one more try.
            self.auth.invalidate(token)
            self.auth.token()
            try:
                return super().request(method, path, authorize=True, **kwargs)
            except AuthFailedError as exc:
                raise AuthFailedError(
                    "Authentication failed: Halo issued a token but the API refused it. Check that the "
                    f"application's agent is active and API-only. {AUTH_HINT}",
                    status=exc.status,
                    vendor_message=exc.vendor_message,
                ) from None

    def vendor_message(self, response: requests.Response) -> str:
        """Halo's error shapes, in the order the HaloAPI module tries them (fact sheet section 5).
        Redacted before shortening, so a cut can never leave part of a secret behind."""
        return self._safe(_error_text(response))[:300]

    def permission_for(self, method: str, path: str) -> tuple[str, str]:
        entity = _entity(path)
        area = _AREAS.get(entity)
        if area is None:
            return f"access to /api/{entity}", PERMISSION_FIX
        return permission_label(method, area), PERMISSION_FIX

    def error_for(self, method: str, url: str, response: requests.Response) -> PsaError:
        if response.status_code == 403:
            path = urlsplit(url).path
            which, fix = self.permission_for(method, path)
            agent = _AGENT_ACCESS.get(_AREAS.get(_entity(path), ""), "")
            said = self._safe(self.vendor_message(response))
            message = (
                f"Halo PSA refused access: the API application needs the permission “{which}”"
                + (f", and the agent it logs in as needs {agent}" if agent else "")
                + f". {fix}"
            )
            return PermissionMissingError(message, which=which, fix=fix, status=403, vendor_message=said)
        error = super().error_for(method, url, response)
        if isinstance(error, InvalidError) and not error.field:
            error.field = _invalid_field(response)
        return error

    # --- authorisation server -------------------------------------------------------------------

    def auth_info(self) -> dict:
        """GET /api/AuthInfo (no token needed): where the authorisation server is."""
        body = self.get("AuthInfo", authorize=False)
        return body if isinstance(body, dict) else {}

    def token(self, url: str, *, tenant: str, client_id: str, client_secret: str, scope: str) -> dict:
        """POST <auth server>/token?tenant=T, form-encoded (fact sheet section 2)."""
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret, "scope": scope}
        try:
            # Asking for a token changes nothing in Halo, so it is safe to resend.
            body = self.json(
                "POST",
                url,
                params={"tenant": tenant} if tenant else None,
                data=form,
                authorize=False,
                idempotent=True,
            )
        except NotFoundError as exc:
            raise InvalidError(
                f"Halo's token endpoint was not found at {url}. Check the Resource Server URL (without /api) and "
                "the Authorisation Server URL.",
                field="resource_server",
                status=exc.status,
            ) from None
        except InvalidError as exc:
            # OAuth refusals come as 400 too (RFC 6749); a wrong tenant most likely looks like this.
            code = exc.vendor_message.split(":")[0].strip()
            if code in _OAUTH_REFUSALS:
                said = f" Halo PSA said: {exc.vendor_message}"
                raise AuthFailedError(f"Authentication failed: {AUTH_HINT}{said}", status=exc.status, vendor_message=exc.vendor_message) from None
            raise
        return body if isinstance(body, dict) else {}

    # --- resource server: lists -----------------------------------------------------------------

    def _pages(self, path: str, key: str, params: dict | None = None) -> Iterator[dict]:
        base = {**(params or {}), "pageinate": "true", "page_size": PAGE_SIZE}

        def fetch(page_no: int) -> tuple[list[dict], int | None]:
            body = self.get(path, params={**base, "page_no": page_no})
            items = parse.rows(body, key)
            # A bare array means Halo ignored paging and sent everything.
            total = len(items) if isinstance(body, list) else parse.record_count(body)
            return items, total

        return pagination.numbered_pages(fetch, page_size=PAGE_SIZE)

    def _list(self, path: str, key: str, params: dict | None = None) -> list[dict]:
        """Configuration lists: a bare array, or wrapped on some versions (both accepted)."""
        return parse.rows(self.get(path, params=params or None), key)

    def peek(self, path: str, key: str, params: dict | None = None) -> list[dict]:
        """GET <path>?count=1: the cheapest read of an entity, for permission probes."""
        return parse.rows(self.get(path, params={**(params or {}), "count": 1}), key)

    def agent_me(self) -> dict:
        body = self.get("Agent/me")
        return body if isinstance(body, dict) else {}

    def list_clients(self, search: str = "") -> Iterator[dict]:
        return self._pages("Client", "clients", {"search": search} if search else None)

    def list_sites(self, client_id: int) -> Iterator[dict]:
        return self._pages("Site", "sites", {"client_id": client_id})

    def list_users(self, client_id: int, search: str = "") -> Iterator[dict]:
        return self._pages("Users", "users", {"client_id": client_id, **({"search": search} if search else {})})

    def get_user(self, user_id: int) -> dict:
        return parse.one(self.get(f"Users/{user_id}"))

    def list_ticket_types(self) -> list[dict]:
        return self._list("TicketType", "tickettypes")

    def get_ticket_type(self, ticket_type_id: int) -> dict:
        return parse.one(self.get(f"TicketType/{ticket_type_id}"))

    def list_statuses(self, tickettype_id: int | None = None) -> list[dict]:
        params = {"type": "ticket"}
        if tickettype_id is not None:
            params["tickettype_id"] = tickettype_id
        return self._list("Status", "statuses", params)

    def list_priorities(self, sla_id: int | None = None) -> list[dict]:
        return self._list("Priority", "priorities", {"slaid": sla_id} if sla_id is not None else None)

    def list_teams(self) -> list[dict]:
        return self._list("Team", "teams")

    def list_outcomes(self) -> list[dict]:
        return self._list("Outcome", "outcomes")

    def list_items(self, search: str = "") -> Iterator[dict]:
        return self._pages("Item", "items", {"search": search} if search else None)

    def get_item(self, item_id: int) -> dict:
        return parse.one(self.get(f"Item/{item_id}"))

    def list_contracts(self, client_id: int | None = None) -> Iterator[dict]:
        return self._pages("ClientContract", "contracts", {"client_id": client_id} if client_id is not None else None)

    # --- tickets and actions --------------------------------------------------------------------

    def list_tickets(self, **filters: Any) -> Iterator[dict]:
        return self._pages("Tickets", "tickets", filters)

    def get_ticket(self, ticket_id: int) -> dict:
        return parse.one(self.get(f"Tickets/{ticket_id}"))

    def post_tickets(self, tickets: list[dict], *, idempotent: bool = False) -> Any:
        """Create (no id) or update (with id) tickets; Halo has no PUT or PATCH."""
        return self.json("POST", "Tickets", json=tickets, idempotent=idempotent)

    def list_actions(self, ticket_id: int) -> list[dict]:
        return self._list("Actions", "actions", {"ticket_id": ticket_id})

    def post_actions(self, actions: list[dict]) -> Any:
        return self.json("POST", "Actions", json=actions)

    # --- software licences ----------------------------------------------------------------------

    def list_licences(self, client_id: int | None = None) -> Iterator[dict]:
        return self._pages("SoftwareLicence", "licences", {"client_id": client_id} if client_id is not None else None)

    def get_licence(self, licence_id: int) -> dict:
        return parse.one(self.get(f"SoftwareLicence/{licence_id}"))

    def post_licences(self, licences: list[dict], *, idempotent: bool = False) -> Any:
        return self.json("POST", "SoftwareLicence", json=licences, idempotent=idempotent)

    # --- webhooks (two-way sync) ----------------------------------------------------------------

    def list_webhooks(self) -> list[dict]:
        return self._list("Webhook", "webhooks")

    def get_webhook(self, webhook_id: str) -> dict:
        return parse.one(self.get(f"Webhook/{webhook_id}", params={"includedetails": "true"}))

    def post_webhooks(self, webhooks: list[dict]) -> Any:
        return self.json("POST", "Webhook", json=webhooks)

    def delete_webhook(self, webhook_id: str) -> None:
        self.request("DELETE", f"Webhook/{webhook_id}")


def _entity(path: str) -> str:
    """'/api/SoftwareLicence/12' -> 'softwarelicence'."""
    parts = [part for part in path.split("/") if part]
    if parts and parts[0].lower() == "api":
        parts = parts[1:]
    return parts[0].lower() if parts else ""


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return "" if text.startswith("<") else text
    if isinstance(body, str):
        return body
    if not isinstance(body, dict):
        return ""
    if body.get("errorMessage"):
        code = body.get("resultCode")
        return f"{body['errorMessage']}" + (f" (result code {code})" if code not in (None, "", 0) else "")
    for key in ("Message", "message"):
        if isinstance(body.get(key), str) and body[key]:
            return body[key]
    if isinstance(body.get("error"), str) and body["error"]:
        description = body.get("error_description")
        return body["error"] + (f": {description}" if isinstance(description, str) and description else "")
    return "; ".join(f"{key}: {_first_text(value)}" for key, value in body.items() if _FIELD_PATH.match(str(key)))


def _first_text(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def _invalid_field(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        for key in body:
            match = _FIELD_PATH.match(str(key))
            if match:
                return match.group(1)
    return ""
