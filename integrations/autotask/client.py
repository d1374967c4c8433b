"""The Autotask REST client: one method per endpoint, on the one HTTP path of integrations.base.

Autotask's error model differs from HTTP's usual one, and the overrides here exist for it:
- 401 means the UserName/Secret pair was refused. It is never retried (the base client does not
  retry 401): repeated failures lock the MSP's API user.
- Validation, business-rule and permission failures come back as HTTP 500 with
  `{"errors": [...]}`. Such a 500 is Autotask answering, not Autotask failing, so it becomes
  AuthFailed / PermissionMissing / Invalid / Blocked with Autotask's own words, and is not
  retried. Only a 500 without that shape is treated as the PSA being unavailable.
- Threads are limited per entity endpoint (3 at a time per tracking identifier), so the
  concurrency bucket is the entity.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests

from integrations.autotask import parse
from integrations.base.client import HttpClient, Transport
from integrations.base.errors import (
    AuthFailedError,
    BlockedError,
    InvalidError,
    NotFoundError,
    PermissionMissingError,
    PsaError,
    UnavailableError,
)
from integrations.base.pagination import follow_cursor

MAX_RECORDS = 500
AUTH_HINT = (
    "Re-enter the Username, Password, and Tracking Identifier. "
    "Confirm the user’s Security Level is “API User (system)” in Autotask."
)
ACTIONS = {"GET": "read", "POST": "add", "PATCH": "edit", "PUT": "edit", "DELETE": "delete"}
ENTITY_LABELS = {
    "companies": "Companies",
    "contacts": "Contacts",
    "tickets": "Tickets",
    "ticketnotes": "Ticket Notes",
    "contracts": "Contracts",
    "contractservices": "Contract Services",
    "contractserviceunits": "Contract Service Units",
    "contractserviceadjustments": "Contract Service Adjustments",
    "services": "Services",
}


class AutotaskClient(HttpClient):
    vendor = "Autotask"
    auth_hint = AUTH_HINT

    def __init__(
        self,
        api_url: str,
        *,
        username: str,
        secret: str,
        integration_code: str,
        transport: Transport | None = None,
        impersonation_resource_id: str = "",
    ):
        super().__init__(api_url, transport, secrets=(secret, integration_code))
        self._username = username
        self._secret = secret
        self._integration_code = integration_code
        self._impersonation = impersonation_resource_id

    # --- hooks -------------------------------------------------------------------------------------

    def authorize(self, request: requests.Request) -> None:
        request.headers["ApiIntegrationCode"] = self._integration_code
        request.headers["UserName"] = self._username
        request.headers["Secret"] = self._secret
        request.headers["Accept"] = "application/json"
        if request.json is not None:
            request.headers["Content-Type"] = "application/json"
        # Impersonating on reads is reported to fail with the "permissions to query" error.
        if self._impersonation and request.method in ("POST", "PATCH", "PUT") and "/query" not in request.url:
            request.headers["ImpersonationResourceId"] = self._impersonation

    def bucket_for(self, method: str, path: str) -> str:
        return parse.entity_of(path) or "all"

    def permission_for(self, method: str, path: str) -> tuple[str, str]:
        module = parse.module_for(parse.entity_of(path))
        return module, parse.FIX.format(module=module)

    def error_for(self, method: str, url: str, response: requests.Response) -> PsaError:
        status = response.status_code
        try:
            texts = parse.error_texts(response.json())
        except ValueError:
            texts = []
        if status == 401 or not texts:
            return super().error_for(method, url, response)
        said = self._safe("; ".join(texts))
        if any(parse.is_invalid_integration_code(t) for t in texts):
            return AuthFailedError(
                "Authentication failed: Autotask rejected the Tracking Identifier (API integration code). "
                "Re-enter the Tracking Identifier copied from the API user in Autotask (Admin > Resources "
                "(Users) > the API user > API Tracking Identifier).",
                status=status,
                vendor_message=said,
            )
        path = urlsplit(url).path
        action = next((a for a in map(parse.permission_action, texts) if a), None)
        if action:
            return self.permission_error(path, action, status=status, vendor_message=said)
        if status == 404:
            message = f"Autotask could not find {path}. Autotask said: {said}"
            return NotFoundError(message, status=status, vendor_message=said)
        which = next((f for f in map(parse.field_in_error, texts) if f), "")
        if which:
            message = f"Autotask rejected the value of {which}: {said}"
            return InvalidError(message, field=which, status=status, vendor_message=said)
        return BlockedError(f"Autotask refused the request: {said}", status=status, vendor_message=said)

    def permission_error(self, path: str, action: str, **kwargs) -> PermissionMissingError:
        entity = parse.entity_of(path)
        module = parse.module_for(entity)
        fix = parse.FIX.format(module=module)
        label = ENTITY_LABELS.get(entity, entity or "this entity")
        return PermissionMissingError(
            f"The Autotask API user's security level does not allow it to {action} {label}. {fix}",
            which=module,
            fix=fix,
            **kwargs,
        )

    # --- metadata ---------------------------------------------------------------------------------

    def threshold_information(self) -> dict:
        """GET ThresholdInformation: the hourly request budget and what is spent of it."""
        return self.get("ThresholdInformation")

    def entity_information(self, entity: str) -> dict:
        """GET {entity}/entityInformation."""
        return self.get(f"{entity}/entityInformation")

    def entity_fields(self, entity: str) -> dict:
        """GET {entity}/entityInformation/fields: field metadata with the picklists."""
        return self.get(f"{entity}/entityInformation/fields")

    # --- reads ------------------------------------------------------------------------------------

    def item(self, entity: str, item_id: str | int) -> dict | None:
        """GET {entity}/{id}. None for a missing id, whichever way Autotask says it (200
        {"item": null} or 404)."""
        try:
            body = self.get(f"{entity}/{_id(item_id)}")
        except NotFoundError:
            return None
        return parse.field(body, "item") if isinstance(body, dict) else None

    def query(self, entity: str, body: dict) -> dict:
        """POST {entity}/query. A read, so safe to retry."""
        return self.json("POST", f"{entity}/query", json=body, idempotent=True)

    def query_get(self, entity: str, body: dict) -> dict:
        """GET {entity}/query?search=… (short queries only: URLs over ~2,000 characters fail)."""
        return self.get(f"{entity}/query", params={"search": jsonlib.dumps(body, separators=(",", ":"))})

    def query_next(self, next_url: str, body: dict | None = None) -> dict:
        """Follow a pageDetails.nextPageUrl: POST with the first query's body when it was a POST
        (a GET there answers 405), GET otherwise."""
        self._check_same_host(next_url)
        if body is None:
            return self.get(next_url)
        return self.json("POST", next_url, json=body, idempotent=True)

    def query_count(self, entity: str, body: dict) -> int:
        """POST {entity}/query/count."""
        answer = self.json("POST", f"{entity}/query/count", json=body, idempotent=True)
        return int(parse.field(answer, "queryCount", 0) or 0)

    # --- writes -----------------------------------------------------------------------------------

    def create(self, entity: str, body: dict) -> int:
        """POST {entity} -> the new id. Not retried when the outcome is unknown."""
        return self._item_id(self.json("POST", entity, json=body))

    def patch(self, entity: str, body: dict) -> int:
        """PATCH {entity} with the id in the body; only the properties sent change."""
        # Setting absolute values twice gives the same record, so a lost answer may be retried.
        return self._item_id(self.json("PATCH", entity, json=body, idempotent=True))

    def create_child(self, parent: str, parent_id: str | int, child: str, body: dict) -> int:
        """POST {parent}/{id}/{child}: Autotask creates children only through the parent's URL."""
        return self._item_id(self.json("POST", f"{parent}/{_id(parent_id)}/{child}", json=body))

    def create_ticket(self, body: dict) -> int:
        return self.create("Tickets", body)

    def patch_ticket(self, body: dict) -> int:
        return self.patch("Tickets", body)

    def create_ticket_note(self, ticket_id: str | int, body: dict) -> int:
        """POST Tickets/{id}/Notes (a top-level POST TicketNotes answers 404)."""
        return self.create_child("Tickets", ticket_id, "Notes", body)

    def create_service_adjustment(self, contract_id: str | int, body: dict) -> int:
        """POST Contracts/{id}/ServiceAdjustments. A delta: never resend blindly."""
        return self.create_child("Contracts", contract_id, "ServiceAdjustments", body)

    # --- helpers ----------------------------------------------------------------------------------

    def _item_id(self, body) -> int:
        item_id = parse.field(body, "itemId") if isinstance(body, dict) else None
        if item_id is None:
            raise UnavailableError("Autotask accepted the request but did not return the record's id.")
        return int(item_id)

    def _check_same_host(self, url: str) -> None:
        """nextPageUrl carries our credentials on the next call, so it must be the zone host."""
        want, got = urlsplit(self.base_url), urlsplit(url)
        if (got.scheme, got.netloc.lower()) != (want.scheme, want.netloc.lower()):
            raise UnavailableError(
                f"Autotask sent a next-page link to another host ({got.hostname}); the hub stopped paging "
                "there rather than send the API user's credentials to it."
            )


def _id(value) -> int:
    """An id for a URL path: digits only, so nothing else can be spliced into the path."""
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise InvalidError(f"{value!r} is not an Autotask id.", field="id") from None


def query_body(filters: list[dict], *, max_records: int = MAX_RECORDS, include_fields: list[str] | None = None) -> dict:
    body: dict = {"filter": filters, "MaxRecords": max_records}
    if include_fields:
        # With more than one page of results Autotask needs the id among the fields.
        body["IncludeFields"] = include_fields if "id" in include_fields else ["id", *include_fields]
    return body


def query_all(client: AutotaskClient, entity: str, body: dict, *, method: str = "POST") -> Iterator[dict]:
    """Every record of a query, following nextPageUrl page by page."""

    def fetch(next_url):
        if next_url is None:
            page = client.query(entity, body) if method == "POST" else client.query_get(entity, body)
        else:
            page = client.query_next(next_url, body if method == "POST" else None)
        details = parse.field(page, "pageDetails") or {}
        return list(parse.field(page, "items") or []), parse.field(details, "nextPageUrl") or None

    return follow_cursor(fetch)
