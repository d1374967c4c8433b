"""Inbound HTTP from the PSAs: Halo webhooks and ConnectWise callbacks.

Each call is checked (a secret the hub made, compared in constant time against its stored
SHA-256), size-capped and parsed, recorded as a WebhookReceipt, and then treated as a hint only:
a task reads the ticket through the PSA's API and applies what it finds (ticketing/inbound.py).
Nothing here calls the PSA (DESIGN.md rule 3), and the body's own status is never trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import uuid

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations import services as integration_services
from integrations.models import Connection, IntegrationLog
from ticketing.models import StatusSync, WebhookReceipt
from ticketing.status_sync import secret_hash

logger = logging.getLogger(__name__)

MAX_BODY = 256 * 1024


def _answer(status: int, message: str) -> JsonResponse:
    return JsonResponse({"detail": message}, status=status)


def _sync(connection_id: uuid.UUID, mode: str) -> tuple[StatusSync | None, Connection | None]:
    sync = StatusSync.objects.filter(connection_id=connection_id, mode=mode, removing=False).select_related("account").first()
    connection = Connection.objects.filter(pk=connection_id).first() if sync else None
    return sync, connection


def _matches(stored_hash: str, given: str) -> bool:
    # Both sides hashed, so the comparison takes the same time whatever the lengths.
    return bool(stored_hash) and hmac.compare_digest(stored_hash, secret_hash(given or ""))


def _reject(sync, connection, vendor: str, request: HttpRequest, why: str) -> JsonResponse:
    remote = request.META.get("REMOTE_ADDR", "")
    if sync is not None:
        integration_services.log_action(
            sync.account, "webhook.rejected", f"{vendor} call from {remote} refused: {why}.",
            outcome=IntegrationLog.Outcome.ERROR, connection=connection,
        )
        WebhookReceipt.objects.create(account=sync.account, vendor=sync.vendor, connection_id=sync.connection_id,
                                      outcome="rejected", detail=why)
    else:
        logger.warning("%s webhook for an unknown connection refused (%s)", vendor, remote)
    return _answer(401, "Not authorised.")


def _read_body(request: HttpRequest) -> bytes | None:
    """The body, or None when it is over MAX_BODY (told by Content-Length, or found reading)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY:
        return None
    body = request.read(MAX_BODY + 1)
    return None if len(body) > MAX_BODY else body


def _parse(body: bytes):
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _accept(sync: StatusSync, connection: Connection, body: bytes, ticket_id: str, detail: str) -> JsonResponse:
    digest = hashlib.sha256(body).hexdigest()
    duplicate = WebhookReceipt.objects.filter(account=sync.account, vendor=sync.vendor, body_sha256=digest,
                                              ticket_id=ticket_id).exclude(outcome="rejected").exists()
    if not ticket_id:
        WebhookReceipt.objects.create(account=sync.account, vendor=sync.vendor, connection_id=sync.connection_id,
                                      body_sha256=digest, outcome="ignored", detail="No ticket id in the body.")
        integration_services.log_action(sync.account, "webhook.ignored",
                                        f"{connection.get_vendor_display()} call without a ticket id; ignored.",
                                        outcome=IntegrationLog.Outcome.SKIPPED, connection=connection)
        return _answer(202, "Ignored: no ticket id.")
    receipt = WebhookReceipt.objects.create(
        account=sync.account, vendor=sync.vendor, connection_id=sync.connection_id, ticket_id=ticket_id,
        body_sha256=digest, outcome="duplicate" if duplicate else "accepted", detail=detail,
    )
    # A repeat is read again all the same: the ticket's state in the PSA decides, and a replay of
    # an old body can at worst cause one more read (apply_ticket_status never goes backwards).
    from ticketing import tasks

    correlation_id = integration_services.new_correlation_id()
    source = f"{connection.get_vendor_display()} {'webhook' if sync.vendor == 'halo' else 'callback'}"
    args = (str(connection.pk), ticket_id, receipt.pk, correlation_id, source)
    transaction.on_commit(lambda: tasks.refresh_ticket_status.delay(*args))
    return _answer(202, "Accepted.")


def _basic_password(request: HttpRequest) -> tuple[str, str]:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return user, password


def _first_id(body, *paths: tuple[str, ...]) -> str:
    for path in paths:
        value = body
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, str)) and str(value).strip().isdigit():
            return str(int(str(value).strip()))
    return ""


@csrf_exempt
@require_POST
def halo(request: HttpRequest, connection_id: uuid.UUID):
    sync, connection = _sync(connection_id, StatusSync.Mode.WEBHOOK)
    _, password = _basic_password(request)
    if sync is None or connection is None or not _matches(sync.secret_hash, password):
        return _reject(sync, connection, "Halo webhook", request, "wrong or missing Basic credentials")
    body = _read_body(request)
    if body is None:
        return _answer(413, f"The body is over {MAX_BODY // 1024} kB.")
    payload = _parse(body)
    if payload is None or not isinstance(payload, (dict, list)):
        return _answer(400, "The body is not JSON.")
    if isinstance(payload, list):  # batched deliveries (v2.164+): one hint per ticket
        ids = {_first_id(item, ("ticket", "id"), ("ticket_id",), ("id",)) for item in payload if isinstance(item, dict)}
        ids.discard("")
        if not ids:
            return _accept(sync, connection, body, "", "")
        for ticket_id in sorted(ids):
            _accept(sync, connection, body, ticket_id, "batched")
        return _answer(202, "Accepted.")
    # The exact shape is UNCONFIRMED (fact sheet section 8): "the ticket and action objects".
    ticket_id = _first_id(payload, ("ticket", "id"), ("ticket_id",), ("action", "ticket_id"), ("id",))
    return _accept(sync, connection, body, ticket_id, str(payload.get("event") or payload.get("type") or "")[:100])


@csrf_exempt
@require_POST
def connectwise(request: HttpRequest, connection_id: uuid.UUID, token: str):
    # ConnectWise can sign callbacks (x-content-signature, keyed by a key fetched from the
    # body's Metadata.key_url), but the shape of that key's answer is UNCONFIRMED and fetching it
    # would be a PSA call during the request. Like DJCW we do not verify it: the unguessable token
    # in the URL authenticates the caller, and the body is only a hint; the ticket is read back
    # through the API, so a forged body cannot change anything the PSA does not say.
    sync, connection = _sync(connection_id, StatusSync.Mode.CALLBACK)
    if sync is None or connection is None or not _matches(sync.secret_hash, token):
        return _reject(sync, connection, "ConnectWise callback", request, "wrong token in the callback URL")
    body = _read_body(request)
    if body is None:
        return _answer(413, f"The body is over {MAX_BODY // 1024} kB.")
    payload = _parse(body)
    if payload is None or not isinstance(payload, dict):
        return _answer(400, "The body is not JSON.")
    kind = str(payload.get("Type") or "ticket").lower()
    action = str(payload.get("Action") or "").lower()
    if kind != "ticket" or action == "deleted":
        WebhookReceipt.objects.create(account=sync.account, vendor=sync.vendor, connection_id=sync.connection_id,
                                      ticket_id=_first_id(payload, ("ID",)), outcome="ignored",
                                      detail=f"{kind} {action}".strip())
        return _answer(202, "Ignored.")
    ticket_id = _first_id({"q": request.GET.get("recordId", "")}, ("q",)) or _first_id(payload, ("ID",))
    return _accept(sync, connection, body, ticket_id, action)
