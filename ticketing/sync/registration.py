"""Two-way sync: registering how each connection's PSA tells the hub about ticket changes.

The PSA's status-sync capability (integrations/<vendor>/webhooks.py) says which way:
- a webhook or callback, registered when the connection is verified (and, where it watches the
  chosen board, when the Ticketing settings change board), calling
  <HUB_BASE_URL>/hooks/<vendor>/<connection id>/ with a random secret the hub made (sent to the
  PSA once; the hub keeps its SHA-256 only). Removed with the integration.
- polling, where the PSA has no webhooks for tickets; also the fallback of the others when the
  webhook/callback cannot be registered: a missing permission, or a hub address the PSA cannot
  reach (a private HUB_BASE_URL while the PSA is on the internet).

Everything here runs in tasks (DESIGN.md rule 3); the signal handlers only queue.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integrations import registry
from integrations import services as integration_services
from integrations.base import status_sync as capabilities
from integrations.base.client import RequestRecord
from integrations.base.errors import PermissionMissingError, PsaError, UnavailableError
from integrations.models import Connection, IntegrationLog
from ticketing.models import StatusSync, TicketingConfig

logger = logging.getLogger(__name__)

# Each poll asks for changes since the last one minus this, so a change stamped a little late
# (clock skew, a slow commit in the PSA) is not missed; re-reading one is a no-op.
POLL_OVERLAP = timezone.timedelta(minutes=2)


def secret_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hook_url(vendor: str, connection_id) -> str:
    return f"{settings.HUB_BASE_URL}/hooks/{vendor}/{connection_id}/"


def capability(vendor: str) -> capabilities.StatusSync:
    return registry.provider(vendor).status_sync


def poll_minutes(vendor: str) -> int:
    return capability(vendor).poll_minutes


def sync_for(connection: Connection) -> StatusSync:
    sync, _ = StatusSync.objects.get_or_create(
        connection_id=connection.pk,
        defaults={"account_id": connection.account_id, "vendor": connection.vendor,
                  "poll_watermark": timezone.now() - POLL_OVERLAP},
    )
    return sync


def _private(host: str) -> bool:
    """A loopback, private or link-local address, or a name only a local network resolves.
    (No DNS lookup: a public name is taken at its word; the PSA says if it cannot reach it.)"""
    host = host.strip("[]").lower()
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        pass
    return host == "localhost" or "." not in host or host.endswith((".localhost", ".local", ".internal", ".lan", ".home.arpa"))


def unreachable_reason(connection: Connection) -> str:
    """Why the PSA cannot call the hub back, or "". A hub on a private or local address can
    be reached by a PSA on the same kind of network only (an on-premise PSA, or the fakes)."""
    hub_host = urlsplit(settings.HUB_BASE_URL).hostname or ""
    if not _private(hub_host):
        return ""
    config = connection.config
    psa_url = next((config[name] for name in registry.provider(connection.vendor).host_fields if config.get(name)), "")
    psa_host = urlsplit(psa_url if "//" in psa_url else f"https://{psa_url}").hostname or ""
    if psa_host and _private(psa_host):
        return ""
    return (f"the hub's address ({settings.HUB_BASE_URL}, HUB_BASE_URL) is on a private network, which "
            f"{connection.get_vendor_display()} cannot reach")


def _log(connection: Connection, message: str, correlation_id: str, outcome=IntegrationLog.Outcome.OK, action="webhook.register"):
    integration_services.log_action(connection.account, action, message, outcome=outcome, connection=connection,
                                    correlation_id=correlation_id)


def fall_back(sync: StatusSync, connection: Connection, reason: str, correlation_id: str) -> None:
    StatusSync.objects.filter(pk=sync.pk).update(
        mode=StatusSync.Mode.POLL, fallback_reason=reason, secret_hash="", remote_id="", remote_object_id="",
        poll_watermark=sync.poll_watermark or timezone.now() - POLL_OVERLAP, last_error="",
    )
    _log(connection, f"Status changes are checked every {poll_minutes(connection.vendor)} minutes because {reason}.",
         correlation_id, IntegrationLog.Outcome.SKIPPED)


def fallback_notice(sync: StatusSync | None) -> str:
    """The sentence the pages show, or ""."""
    if sync is None or sync.mode != StatusSync.Mode.POLL:
        return ""
    if sync.fallback_reason:
        return f"Status changes are checked every {poll_minutes(sync.vendor)} minutes because {sync.fallback_reason}."
    return f"Status changes are checked every {poll_minutes(sync.vendor)} minutes ({capability(sync.vendor).poll_reason})."


# --- registering -----------------------------------------------------------------------------------


def queue_registration(connection: Connection) -> None:
    from ticketing import tasks

    connection_id, correlation_id = str(connection.pk), integration_services.new_correlation_id()

    def send():
        try:
            tasks.register_status_sync.delay(connection_id, correlation_id)
        except Exception:
            logger.warning("Could not queue the status sync registration of %s", connection_id, exc_info=True)

    transaction.on_commit(send)


def config_saved(config: TicketingConfig) -> None:
    """A subscription that watches the chosen board is registered again when the board changes."""
    if config.vendor not in registry.VENDORS or not capability(config.vendor).watches_board:
        return
    connection = Connection.objects.filter(account_id=config.account_id, vendor=config.vendor,
                                           status=Connection.Status.CONNECTED).first()
    if connection is None:
        return
    sync = StatusSync.objects.filter(connection_id=connection.pk).first()
    if sync is not None and sync.mode == capability(config.vendor).mode and sync.remote_object_id == config.board_id:
        return
    queue_registration(connection)


REGISTRATION_LEASE = timezone.timedelta(minutes=2)


def register(connection_id: str, correlation_id: str) -> StatusSync | None:
    """One registration at a time per connection (verification and a saved board can both ask
    at once; two would both create a callback): a second one is retried by its task.

    The lease is taken with one conditional UPDATE of the sync row, atomic on every database
    (a cache.add lock is not atomic on the embedded file cache)."""
    connection = Connection.objects.filter(pk=connection_id).select_related("account").first()
    if connection is None or connection.status != Connection.Status.CONNECTED:
        return None
    sync = sync_for(connection)
    now = timezone.now()
    leased = (
        StatusSync.objects.filter(pk=sync.pk)
        .filter(Q(registering_until__isnull=True) | Q(registering_until__lt=now))
        .update(registering_until=now + REGISTRATION_LEASE)
    )
    if not leased:
        raise UnavailableError("Another registration of this connection's webhook is running; retrying shortly.")
    try:
        return _register(connection, StatusSync.objects.get(pk=sync.pk), correlation_id)
    finally:
        StatusSync.objects.filter(pk=sync.pk).update(registering_until=None)


def _register(connection: Connection, sync: StatusSync, correlation_id: str) -> StatusSync:
    way = capability(connection.vendor)
    if way.mode == capabilities.POLL:
        if sync.mode != StatusSync.Mode.POLL:
            StatusSync.objects.filter(pk=sync.pk).update(mode=StatusSync.Mode.POLL, fallback_reason="")
            _log(connection, f"Ticket status changes will be polled every {way.poll_minutes} minutes.", correlation_id)
        return StatusSync.objects.get(pk=sync.pk)
    reason = unreachable_reason(connection)
    if reason:
        fall_back(sync, connection, reason, correlation_id)
        return StatusSync.objects.get(pk=sync.pk)
    try:
        _subscribe(connection, sync, way, correlation_id)
    except PermissionMissingError as exc:
        fall_back(sync, connection, f"the PSA refused to register it ({exc.which or 'permission missing'}): {exc.message}",
                  correlation_id)
    except PsaError as exc:
        if not exc.permanent:
            raise
        fall_back(sync, connection, f"registering it failed: {exc.message}", correlation_id)
    return StatusSync.objects.get(pk=sync.pk)


def _subscribe(connection: Connection, sync: StatusSync, way: capabilities.StatusSync, correlation_id: str) -> None:
    config = TicketingConfig.objects.for_account(connection.account).first()
    if config is not None and config.vendor != connection.vendor:
        config = None
    board_id = config.board_id if config is not None else ""
    if way.watches_board:
        if not board_id:
            StatusSync.objects.filter(pk=sync.pk).update(
                mode=StatusSync.Mode.NONE,
                last_error=f"Choose a board on the Ticketing page; the {way.noun} watches that board.")
            return
        if sync.mode == way.mode and sync.remote_object_id == board_id and sync.secret_hash:
            return  # already watching this board
    secret = secrets.token_urlsafe(32)
    provider = integration_services.build_provider(connection, action="webhook.register", correlation_id=correlation_id)
    subscription = way.subscribe(
        provider, url=hook_url(connection.vendor, connection.pk), secret=secret, board_id=board_id,
        label=f"hub-{str(connection.pk)[:8]}", options=dict(config.extra) if config is not None else {},
    )
    StatusSync.objects.filter(pk=sync.pk).update(
        mode=way.mode, secret_hash=secret_hash(secret), remote_id=subscription.remote_id,
        remote_object_id=subscription.remote_object_id, fallback_reason="", registered_at=timezone.now(), last_error="",
    )
    _log(connection, way.registered_message(registry.provider(connection.vendor).name, (config.board_name or board_id) if config else ""),
         correlation_id)


# --- removing --------------------------------------------------------------------------------------


def connection_removing(connection: Connection) -> None:
    """Signal handler (inside the removal's transaction): keep what the removal task needs."""
    sync = StatusSync.objects.filter(connection_id=connection.pk).first()
    if sync is None:
        return
    if not sync.remote_id:
        sync.delete()
        return
    StatusSync.objects.filter(pk=sync.pk).update(
        removing=True, mode=StatusSync.Mode.NONE, secret_hash="",  # nothing is accepted from it any more
        removal_bundle=connection.credentials,  # still encrypted, bound to this connection id
        removal_config={"config": connection.config, "key_id": connection.credentials_key_id,
                        "updated": connection.credentials_updated_at.isoformat() if connection.credentials_updated_at else ""},
    )
    from ticketing import tasks

    sync_id = sync.pk
    transaction.on_commit(lambda: tasks.remove_status_sync.delay(sync_id, integration_services.new_correlation_id()))


def remove(sync_id: int, correlation_id: str) -> bool:
    """Delete the webhook/callback from the PSA, then the row. Tolerant: one already gone is
    fine, and a refusal is logged and the row dropped (the PSA disables a dead hook itself)."""
    sync = StatusSync.objects.filter(pk=sync_id, removing=True).select_related("account").first()
    if sync is None:
        return False
    # The connection row is gone: a transient one, never saved, carries the encrypted bundle
    # to load_credentials (the one place that decrypts it).
    connection = Connection(id=sync.connection_id, account=sync.account, vendor=sync.vendor,
                            config=sync.removal_config.get("config") or {}, credentials=sync.removal_bundle,
                            credentials_key_id=sync.removal_config.get("key_id") or "",
                            status=Connection.Status.CONNECTED)
    account = sync.account
    try:
        provider = integration_services.build_provider(connection, action="webhook.remove", correlation_id=correlation_id)
        # Its request log rows cannot point at the deleted connection.
        provider.transport.on_request = _unlinked_request_logger(account, correlation_id)
        way = capability(sync.vendor)
        way.unsubscribe(provider, sync.remote_id)
        message, outcome = f"Removed the {connection.get_vendor_display()} {way.noun}.", IntegrationLog.Outcome.OK
    except PsaError as exc:
        if not exc.permanent:
            raise
        message, outcome = f"Could not remove the webhook from the PSA: {exc.message}", IntegrationLog.Outcome.ERROR
    except Exception as exc:
        message, outcome = f"Could not remove the webhook from the PSA: {integration_services.failure_message(exc)}", IntegrationLog.Outcome.ERROR
    integration_services.log_action(account, "webhook.remove", message, outcome=outcome, correlation_id=correlation_id)
    sync.delete()
    return outcome == IntegrationLog.Outcome.OK


def _unlinked_request_logger(account, correlation_id: str):
    def record(entry: RequestRecord) -> None:
        IntegrationLog.objects.create(
            account=account, action="webhook.remove",
            outcome=IntegrationLog.Outcome.ERROR if entry.status is None or entry.status >= 400 else IntegrationLog.Outcome.OK,
            message=f"{entry.method} {entry.path} → {entry.status or entry.error}", http_method=entry.method,
            http_path=entry.path, http_status=entry.status, duration_ms=entry.duration_ms,
            request_excerpt=entry.request_excerpt, response_excerpt=entry.response_excerpt, correlation_id=correlation_id,
        )

    return record
