"""Thin tasks: IDs in, one service call. Retry policy lives here; logic in services.

Services record permanent PSA errors themselves and raise transient ones (timeouts, 429s,
5xx); a task retries those with backoff and, after the last retry, has the service record
the failure so the page stops saying "working on it".
"""

from __future__ import annotations

from celery import shared_task

from integrations import services
from integrations.base.errors import PsaError, RateLimitedError

# ConnectWise "may take up to 1–2 minutes to confirm the connection" (seed 000): verification
# keeps trying for several minutes before it reports the failure.
VERIFY_RETRIES = 5


def _retry_or_give_up(
    task, exc: PsaError, connection_id: str, action: str, correlation_id: str, *, prefix: str = "", **detail
) -> None:
    if task.request.retries >= task.max_retries:
        services.record_failure(connection_id, action, prefix + exc.message, correlation_id, **detail)
        return
    if isinstance(exc, RateLimitedError) and exc.retry_after:
        countdown = exc.retry_after
    else:
        countdown = min(300, 10 * 2**task.request.retries)
    services.note_retry(connection_id, action, prefix + exc.message)
    raise task.retry(exc=exc, countdown=countdown)


@shared_task(bind=True, name="integrations.verify_connection", max_retries=VERIFY_RETRIES)
def verify_connection(self, connection_id: str, correlation_id: str) -> None:
    try:
        services.verify_connection(connection_id, correlation_id)
    except PsaError as exc:
        _retry_or_give_up(self, exc, connection_id, "connection.verify", correlation_id)


@shared_task(bind=True, name="integrations.check_permissions", max_retries=3)
def check_permissions(self, connection_id: str, correlation_id: str) -> None:
    try:
        services.check_permissions(connection_id, correlation_id)
    except PsaError as exc:
        _retry_or_give_up(self, exc, connection_id, "connection.permissions", correlation_id)


@shared_task(bind=True, name="integrations.refresh_picklist", max_retries=3)
def refresh_picklist(self, connection_id: str, kind: str, parent_id: str, correlation_id: str) -> None:
    try:
        services.refresh_picklist(connection_id, kind, parent_id, correlation_id)
    except PsaError as exc:
        _retry_or_give_up(self, exc, connection_id, "connection.picklist", correlation_id,
                          prefix=f"Could not refresh {kind}: ", picklist=(kind, parent_id))


@shared_task(bind=True, name="integrations.import_companies", max_retries=3)
def import_companies(self, connection_id: str, correlation_id: str) -> None:
    try:
        services.import_companies(connection_id, correlation_id)
    except PsaError as exc:
        _retry_or_give_up(self, exc, connection_id, "import.companies", correlation_id, prefix="Import failed: ")


# Logs and health (beat; integrations/health.py and integrations/logs.py hold the logic) ----------


@shared_task(name="integrations.evaluate_health")
def evaluate_health() -> int:
    """Connections that are not Healthy, owe a notice, or failed lately: Broken and the return
    to Healthy are reached by time passing, with nothing logged to trigger them."""
    from integrations import health

    return health.evaluate_due()


@shared_task(name="integrations.warn_expiring_credentials")
def warn_expiring_credentials() -> int:
    from integrations import health

    return health.warn_expiring()


@shared_task(name="integrations.purge_old_logs")
def purge_old_logs() -> int:
    """Retention: entries older than HUB_LOG_RETENTION_DAYS, in batches of 5,000 ids."""
    from integrations import logs

    return logs.purge_old_entries()
