"""Inbound HTTP from the PSAs (webhooks, callbacks): one view for every PSA.

The URL names the vendor and the connection: /hooks/<vendor>/<connection>/[<token>/]. The vendor's
status-sync capability says where the caller's secret is and which tickets a body is about.
Each call is checked (the secret the hub made, compared in constant time against its stored
SHA-256), size-capped and parsed, recorded as a WebhookReceipt, and then treated as a hint only:
a task reads the ticket through the PSA's API and applies what it finds (ticketing/sync/inbound.py).
Nothing here calls the PSA (DESIGN.md rule 3), and the body's own status is never trusted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations import registry
from integrations import services as integration_services
from integrations.base.status_sync import BadCall, InboundCall, InboundHints, StatusSync as Capability
from integrations.models import Connection, IntegrationLog
from ticketing.models import StatusSync, WebhookReceipt
from ticketing.sync.registration import secret_hash

logger = logging.getLogger(__name__)

MAX_BODY = 256 * 1024


def _answer(status: int, message: str) -> JsonResponse:
    return JsonResponse({"detail": message}, status=status)


def _sync(vendor: str, connection_id: uuid.UUID, mode: str) -> tuple[StatusSync | None, Connection | None]:
    sync = (StatusSync.objects.filter(connection_id=connection_id, vendor=vendor, mode=mode, removing=False)
            .select_related("account").first())
    connection = Connection.objects.filter(pk=connection_id).first() if sync else None
    return sync, connection


def _matches(stored_hash: str, given: str) -> bool:
    # Both sides hashed, so the comparison takes the same time whatever the lengths.
    return bool(stored_hash) and hmac.compare_digest(stored_hash, secret_hash(given or ""))


def _reject(sync, connection, caller: str, request: HttpRequest, why: str) -> JsonResponse:
    remote = request.META.get("REMOTE_ADDR", "")
    if sync is not None:
        integration_services.log_action(
            sync.account, "webhook.rejected", f"{caller} call from {remote} refused: {why}.",
            outcome=IntegrationLog.Outcome.ERROR, connection=connection,
        )
        WebhookReceipt.objects.create(account=sync.account, vendor=sync.vendor, connection_id=sync.connection_id,
                                      outcome="rejected", detail=why)
    else:
        logger.warning("%s for an unknown connection refused (%s)", caller, remote)
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


def _accept(sync: StatusSync, connection: Connection, body: bytes, ticket_id: str, detail: str,
            capability: Capability) -> JsonResponse:
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
    source = f"{connection.get_vendor_display()} {capability.noun}"
    args = (str(connection.pk), ticket_id, receipt.pk, correlation_id, source)
    transaction.on_commit(lambda: tasks.refresh_ticket_status.delay(*args))
    return _answer(202, "Accepted.")


def _ignore(sync: StatusSync, hints: InboundHints) -> JsonResponse:
    WebhookReceipt.objects.create(account=sync.account, vendor=sync.vendor, connection_id=sync.connection_id,
                                  ticket_id=(hints.ticket_ids or ("",))[0], outcome="ignored", detail=hints.detail)
    return _answer(202, hints.ignored)


@csrf_exempt
@require_POST
def receive(request: HttpRequest, vendor: str, connection_id: uuid.UUID, token: str = ""):
    provider = registry.VENDORS.get(vendor)
    capability = provider.provider.status_sync if provider else None
    if capability is None or not capability.noun or capability.secret_in_url != bool(token):
        return _answer(404, "Not found.")
    caller = f"{provider.provider.display_name} {capability.noun}"
    sync, connection = _sync(vendor, connection_id, capability.mode)
    headers = {name.lower(): value for name, value in request.headers.items()}
    call = InboundCall(headers=headers, query=request.GET.dict(), token=token)
    if sync is None or connection is None or not _matches(sync.secret_hash, capability.presented_secret(call)):
        why = "wrong token in the callback URL" if capability.secret_in_url else "wrong or missing credentials"
        return _reject(sync, connection, caller, request, why)
    body = _read_body(request)
    if body is None:
        return _answer(413, f"The body is over {MAX_BODY // 1024} kB.")
    payload = _parse(body)
    if payload is None:
        return _answer(400, "The body is not JSON.")
    try:
        hints = capability.read_call(InboundCall(headers=headers, query=call.query, token=token, payload=payload))
    except BadCall as exc:
        return _answer(400, str(exc))
    if hints.ignored:
        return _ignore(sync, hints)
    if len(hints.ticket_ids) <= 1:
        return _accept(sync, connection, body, (hints.ticket_ids or ("",))[0], hints.detail, capability)
    for ticket_id in hints.ticket_ids:
        _accept(sync, connection, body, ticket_id, hints.detail, capability)
    return _answer(202, "Accepted.")
