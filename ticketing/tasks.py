"""Thin ticketing tasks: IDs in, one service call; retries with backoff live here."""

from __future__ import annotations

from celery import shared_task

from integrations.base.errors import PsaError, RateLimitedError
from ticketing import services

DELIVERY_RETRIES = 6


@shared_task(bind=True, name="ticketing.deliver_incident", queue="psa", max_retries=DELIVERY_RETRIES)
def deliver_incident(self, incident_id: int, correlation_id: str) -> None:
    claim_id = self.request.id or f"direct-{incident_id}"
    try:
        services.deliver(incident_id, claim_id, correlation_id)
    except PsaError as exc:  # transient: timeouts, 429s, 5xx
        if self.request.retries >= self.max_retries:
            services.fail(incident_id, claim_id, f"{exc.message} (gave up after {self.max_retries + 1} attempts)", correlation_id)
            return
        countdown = exc.retry_after if isinstance(exc, RateLimitedError) and exc.retry_after else min(600, 15 * 2**self.request.retries)
        raise self.retry(exc=exc, countdown=countdown)


@shared_task(name="ticketing.sweep")
def sweep() -> int:
    return services.sweep()
