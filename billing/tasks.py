"""Thin billing tasks: IDs in, one service call; waiting and retry policy live here.

Per-tenant PSA errors never reach a task: the service records them on the tenant's line and,
for transient ones, queues `execute_run(run_id, retry=True)` with backoff. What reaches a task
is the account being busy with another run: it waits (retries) and in the end gives up, which
the service records on the run.
"""

from __future__ import annotations

from celery import shared_task

from billing import services
from integrations.base.errors import PsaError, RateLimitedError

# Waiting for another run of the same account: 5 s, 10 s, ... up to a minute apart, ~20 minutes in all.
BUSY_RETRIES = 25


@shared_task(bind=True, name="billing.execute_run", max_retries=BUSY_RETRIES)
def execute_run(self, run_id: int, retry: bool = False) -> None:
    claim_id = self.request.id or f"direct-{run_id}"
    try:
        services.execute_run(run_id, claim_id, retry=retry)
    except services.AccountBusy as exc:
        if self.request.retries >= self.max_retries:
            services.give_up_waiting(run_id, exc.run_id)
            return
        raise self.retry(exc=exc, countdown=min(60, 5 * 2**self.request.retries))
    except PsaError as exc:  # transient, outside any tenant (e.g. while building the provider)
        if self.request.retries >= self.max_retries:
            raise
        countdown = exc.retry_after if isinstance(exc, RateLimitedError) and exc.retry_after else min(600, 15 * 2**self.request.retries)
        raise self.retry(exc=exc, countdown=countdown)


@shared_task(name="billing.auto_sync")
def auto_sync(account_id: int) -> None:
    """Queued with the auto-sync delay as countdown; the dispatcher catches any it misses."""
    services.dispatch_auto_sync(account_id)


@shared_task(name="billing.dispatch")
def dispatch() -> int:
    return services.dispatch_due()
