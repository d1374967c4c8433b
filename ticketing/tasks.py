"""Thin ticketing tasks: IDs in, one service call; retries with backoff live here."""

from __future__ import annotations

from celery import shared_task

from integrations.base.errors import PsaError, RateLimitedError
from ticketing import services

DELIVERY_RETRIES = 6
# Backoff: 15 s, 30 s, 1 min, 2 min, 4 min, 8 min (about a quarter of an hour in all), capped.
BACKOFF_BASE = 15
BACKOFF_CAP = 600


def retry_countdown(retries: int, exc: PsaError) -> float:
    """Seconds before the next attempt: the PSA's Retry-After when it gave one, else backoff."""
    if isinstance(exc, RateLimitedError) and exc.retry_after:
        return exc.retry_after
    return min(BACKOFF_CAP, BACKOFF_BASE * 2**retries)


@shared_task(bind=True, name="ticketing.deliver_incident", max_retries=DELIVERY_RETRIES)
def deliver_incident(self, incident_id: int, correlation_id: str) -> None:
    # The task id is the claim: a retry or a redelivery after a lost worker keeps it.
    claim_id = self.request.id or f"direct-{incident_id}"
    try:
        services.deliver(incident_id, claim_id, correlation_id)
    except PsaError as exc:  # transient: timeouts, 429s, 5xx
        if self.request.retries >= self.max_retries:
            services.fail(incident_id, claim_id, f"{exc.message} (gave up after {self.max_retries + 1} attempts)", correlation_id)
            return
        raise self.retry(exc=exc, countdown=retry_countdown(self.request.retries, exc))


@shared_task(name="ticketing.sweep")
def sweep() -> int:
    return services.sweep()


# --- two-way status sync (ticketing/inbound.py, status_sync.py, polling.py, host.py) ---------

SYNC_RETRIES = 5
HOST_RETRIES = 8
HOST_BACKOFF_BASE = 30
HOST_BACKOFF_CAP = 3600


@shared_task(bind=True, name="ticketing.refresh_ticket_status", max_retries=SYNC_RETRIES)
def refresh_ticket_status(self, connection_id: str, ticket_id: str, receipt_id: int | None, correlation_id: str,
                          source_detail: str = "webhook") -> None:
    from ticketing.sync import inbound

    try:
        inbound.refresh_from_psa(connection_id, ticket_id, receipt_id, correlation_id, source_detail)
    except PsaError as exc:
        if self.request.retries >= self.max_retries:
            return
        raise self.retry(exc=exc, countdown=retry_countdown(self.request.retries, exc))


@shared_task(bind=True, name="ticketing.register_status_sync", max_retries=SYNC_RETRIES)
def register_status_sync(self, connection_id: str, correlation_id: str) -> None:
    from ticketing.sync import registration

    try:
        registration.register(connection_id, correlation_id)
    except PsaError as exc:
        if self.request.retries >= self.max_retries:
            return
        raise self.retry(exc=exc, countdown=retry_countdown(self.request.retries, exc))


@shared_task(bind=True, name="ticketing.remove_status_sync", max_retries=SYNC_RETRIES)
def remove_status_sync(self, sync_id: int, correlation_id: str) -> None:
    from ticketing.sync import registration

    try:
        registration.remove(sync_id, correlation_id)
    except PsaError as exc:
        if self.request.retries >= self.max_retries:
            return
        raise self.retry(exc=exc, countdown=retry_countdown(self.request.retries, exc))


@shared_task(name="ticketing.poll_status_due")
def poll_status_due() -> int:
    from integrations import services as integration_services
    from ticketing.sync import polling

    count = 0
    for sync in polling.due_syncs():
        poll_status.delay(sync.pk, integration_services.new_correlation_id())
        count += 1
    return count


@shared_task(bind=True, name="ticketing.poll_status", max_retries=3)
def poll_status(self, sync_id: int, correlation_id: str) -> None:
    from ticketing.sync import polling

    try:
        polling.poll(sync_id, correlation_id)
    except PsaError as exc:
        if self.request.retries >= self.max_retries:
            return
        raise self.retry(exc=exc, countdown=retry_countdown(self.request.retries, exc))


def host_countdown(retries: int, retry_after: float | None = None) -> float:
    """30 s, 1 min, 2 min ... capped at an hour; the endpoint's Retry-After when longer."""
    import random

    backoff = min(HOST_BACKOFF_CAP, HOST_BACKOFF_BASE * 2**retries) * random.uniform(0.8, 1.2)
    return max(backoff, retry_after or 0)


@shared_task(bind=True, name="ticketing.deliver_host_event", max_retries=HOST_RETRIES)
def deliver_host_event(self, delivery_id: int) -> None:
    from ticketing.sync import host

    try:
        host.attempt(delivery_id, final=self.request.retries >= self.max_retries)
    except host.RetryLater as exc:
        raise self.retry(countdown=host_countdown(self.request.retries, exc.retry_after)) from None


@shared_task(name="ticketing.purge_old_records")
def purge_old_records() -> int:
    """Retention of webhook receipts and finished host deliveries (HUB_LOG_RETENTION_DAYS)."""
    from ticketing import retention

    return retention.purge_old_records()
