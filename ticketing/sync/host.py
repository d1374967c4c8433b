"""Two-way sync, outbound to the host product: an incident changed because of the PSA is posted
to the account's webhook, signed.

Each delivery is a HostDelivery row (the payload is fixed when it is made, so every retry sends
the same bytes and the same event id, which the receiver can use to drop repeats), sent by a
task: `X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`, `X-Hub-Timestamp` (Unix
seconds of the attempt) and `X-Hub-Event-Id`. 5xx, 429, timeouts and connection errors are
retried with exponential backoff; other 4xx are final. Every attempt is a HostDeliveryAttempt.

The signing secret must be readable to sign with, so it is encrypted with hub.vault (bound to the
account and to "host-webhook:<row id>") and decrypted only in `_signing_secret`, for one send.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from datetime import datetime

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from hub import vault
from hub.models import Account
from integrations.base import netguard
from integrations.base.errors import BlockedError
from ticketing.models import HostDelivery, HostDeliveryAttempt, HostWebhook, Incident, Ticket

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature"
TIMESTAMP_HEADER = "X-Hub-Timestamp"
EVENT_HEADER = "X-Hub-Event-Id"
TIMEOUT = (5, 10)  # connect, read (seconds)
SHOWN_ATTEMPTS = 50


class RetryLater(Exception):
    """A transient failure of the host's endpoint; the task retries with backoff."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


# --- configuration --------------------------------------------------------------------------


def webhook_for(account: Account) -> HostWebhook | None:
    return HostWebhook.objects.for_account(account).first()


def save_webhook(account: Account, *, url: str, secret: str | None = None, active: bool = True) -> HostWebhook:
    """Set the URL; a non-empty `secret` replaces the stored one (blank keeps it)."""
    with transaction.atomic():
        hook, _ = HostWebhook.objects.select_for_update().get_or_create(account=account)
        hook.url = url.strip()
        hook.active = active
        if secret:
            hook.secret = vault.encrypt_bundle({"secret": secret}, account_id=account.pk, connection_id=hook.vault_id)
            hook.secret_set = True
        hook.save()
    return hook


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """What the host product does with a delivery (documented, and used by the tests)."""
    return hmac.compare_digest(sign(secret, body), header or "")


def _signing_secret(hook: HostWebhook) -> str:
    return vault.decrypt_bundle(hook.secret, account_id=hook.account_id, connection_id=hook.vault_id)["secret"]


# --- making deliveries ---------------------------------------------------------------------------


def payload_for(incident: Incident, previous: str, ticket: Ticket | None, changed_at: datetime, event_id: str) -> dict:
    return {
        "event": "incident.status_changed",
        "event_id": event_id,
        "incident_id": incident.pk,
        "tenant": incident.tenant.external_id,
        "status": incident.status,
        "previous_status": previous,
        "source": "psa",
        "ticket_number": (ticket.number or ticket.ticket_id) if ticket is not None else "",
        "changed_at": changed_at.isoformat(),
    }


def notify(incident: Incident, previous: str, ticket: Ticket | None, changed_at: datetime) -> HostDelivery | None:
    """Record a delivery for the host product and queue it (after commit). None when the
    account has no active webhook."""
    hook = webhook_for(incident.account)
    if hook is None or not hook.active or not hook.url:
        return None
    event_id = uuid.uuid4().hex
    delivery = HostDelivery.objects.create(
        account_id=incident.account_id, incident=incident, event_id=event_id,
        payload=payload_for(incident, previous, ticket, changed_at, event_id),
    )
    queue(delivery.pk)
    return delivery


def queue(delivery_id: int) -> None:
    from ticketing import tasks

    def send():
        try:
            tasks.deliver_host_event.delay(delivery_id)
        except Exception:
            logger.warning("Could not queue host delivery %s", delivery_id, exc_info=True)

    transaction.on_commit(send)


def body_of(delivery: HostDelivery) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()


# --- sending -------------------------------------------------------------------------------------


def attempt(delivery_id: int, *, final: bool = False) -> str:
    """One attempt. Returns the state reached; raises RetryLater for a transient failure
    (after recording it and putting the delivery back to pending) unless `final`."""
    # Pending, or sending when a worker died mid-send and the task was delivered again (late
    # acks): then the host may see the event twice, with the same X-Hub-Event-Id.
    if not HostDelivery.objects.filter(
        pk=delivery_id, state__in=[HostDelivery.State.PENDING, HostDelivery.State.SENDING]
    ).update(
        state=HostDelivery.State.SENDING, attempts=F("attempts") + 1
    ):
        return HostDelivery.objects.filter(pk=delivery_id).values_list("state", flat=True).first() or "missing"
    delivery = HostDelivery.objects.get(pk=delivery_id)
    hook = webhook_for(delivery.account)
    if hook is None or not hook.url or not hook.secret_set:
        return _done(delivery, HostDelivery.State.FAILED, None, 0, "No webhook URL and signing secret are set.")
    body = body_of(delivery)
    started = time.monotonic()
    status, error, retry_after = None, "", None
    try:
        netguard.check_url(hook.url, allow_private=settings.PSA_ALLOW_PRIVATE_HOSTS)
        secret = _signing_secret(hook)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "psa-hub/1",
            SIGNATURE_HEADER: sign(secret, body),
            TIMESTAMP_HEADER: str(int(time.time())),
            EVENT_HEADER: delivery.event_id,
        }
        del secret
        with netguard.guard(requests.Session(), allow_private=settings.PSA_ALLOW_PRIVATE_HOSTS) as session:
            response = session.post(hook.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False)
        status = response.status_code
        if status == 429:
            retry_after = _seconds(response.headers.get("Retry-After"))
    except BlockedError as exc:
        return _done(delivery, HostDelivery.State.FAILED, None, _ms(started), exc.message)
    except vault.VaultError as exc:
        return _done(delivery, HostDelivery.State.FAILED, None, _ms(started), f"{exc} (Enter the signing secret again.)")
    except requests.Timeout:
        error = "The host product's endpoint did not answer in time."
    except requests.RequestException as exc:
        error = f"Could not reach the host product's endpoint ({type(exc).__name__})."
    duration = _ms(started)
    if status is not None and 200 <= status < 300:
        return _done(delivery, HostDelivery.State.DELIVERED, status, duration, "")
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        return _done(delivery, HostDelivery.State.FAILED, status, duration, f"The endpoint refused the delivery (HTTP {status}).")
    error = error or f"The endpoint answered HTTP {status}."
    if final:
        return _done(delivery, HostDelivery.State.FAILED, status, duration, error + " Gave up after the last retry.")
    _done(delivery, HostDelivery.State.PENDING, status, duration, error)
    raise RetryLater(error, retry_after)


def _done(delivery: HostDelivery, state: str, status: int | None, duration: int, error: str) -> str:
    HostDeliveryAttempt.objects.create(delivery=delivery, status_code=status, duration_ms=duration, error=error)
    fields = {"state": state, "last_error": error}
    if state == HostDelivery.State.DELIVERED:
        fields["delivered_at"] = timezone.now()
    HostDelivery.objects.filter(pk=delivery.pk).update(**fields)
    return state


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def recent_attempts(account: Account):
    return (
        HostDeliveryAttempt.objects.filter(delivery__account=account)
        .select_related("delivery").order_by("-created_at", "-id")[:SHOWN_ATTEMPTS]
    )
