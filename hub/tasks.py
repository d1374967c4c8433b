"""Core tasks: the round trip that proves a worker is alive."""

import socket

from celery import shared_task
from django.utils import timezone

from hub.models import WorkerPing


@shared_task(name="hub.tasks.answer_ping")
def answer_ping(ping_id: str) -> None:
    WorkerPing.objects.filter(pk=ping_id, answered_at__isnull=True).update(
        answered_at=timezone.now(), answered_by=socket.gethostname()
    )


@shared_task(name="hub.tasks.record_heartbeat")
def record_heartbeat() -> None:
    """Beat sends this every minute; the System page shows when a worker last answered."""
    now = timezone.now()
    WorkerPing.objects.create(kind="heartbeat", answered_at=now, answered_by=socket.gethostname())
    # Keep only the recent ones: they are evidence of life, not history.
    stale = WorkerPing.objects.filter(kind="heartbeat").values_list("pk", flat=True)[10:]
    WorkerPing.objects.filter(pk__in=list(stale)).delete()
