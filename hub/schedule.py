"""Beat schedule: one entry per periodic task. Later features add theirs here."""

from datetime import timedelta

# PSA calls go to the "psa" queue, everything else to "default" (see each task's decorator).
BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "hub.tasks.record_heartbeat", "schedule": timedelta(minutes=1)},
    # Incidents accepted while the broker or worker was down, or whose worker died.
    "ticketing-sweep": {"task": "ticketing.sweep", "schedule": timedelta(minutes=1)},
}
