"""Beat schedule: one entry per periodic task. Later features add theirs here."""

from datetime import timedelta

# PSA calls go to the "psa" queue, everything else to "default" (CELERY_TASK_ROUTES in hub/settings.py).
BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "hub.tasks.record_heartbeat", "schedule": timedelta(minutes=1)},
    # Incidents accepted while the broker or worker was down, or whose worker died.
    "ticketing-sweep": {"task": "ticketing.sweep", "schedule": timedelta(minutes=1)},
    # Two-way sync: polls ticket status changes where the PSA cannot call back (Autotask, fallbacks).
    "ticketing-poll-status": {"task": "ticketing.poll_status_due", "schedule": timedelta(minutes=1)},
    # Billing: scheduled runs when due (account time zone), auto syncs past their delay, stalled runs.
    "billing-dispatch": {"task": "billing.dispatch", "schedule": timedelta(minutes=1)},
    # Connection health: Broken and recovery are reached by time passing (integrations/health.py).
    "integrations-health": {"task": "integrations.evaluate_health", "schedule": timedelta(minutes=5)},
    # Credentials that expire within HUB_EXPIRY_WARNING_DAYS: admins are e-mailed once per date.
    "integrations-expiry-warnings": {"task": "integrations.warn_expiring_credentials", "schedule": timedelta(hours=6)},
    # Log retention: entries older than HUB_LOG_RETENTION_DAYS, deleted in batches of 5,000.
    "integrations-log-retention": {"task": "integrations.purge_old_logs", "schedule": timedelta(hours=1)},
    # The same retention for two-way sync's webhook receipts and finished host deliveries.
    "ticketing-retention": {"task": "ticketing.purge_old_records", "schedule": timedelta(hours=1)},
}
