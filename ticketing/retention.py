"""Retention of two-way sync's records: inbound webhook/callback receipts and finished host
deliveries (with their attempts) older than HUB_LOG_RETENTION_DAYS, like the integration log.
Deliveries still pending or sending are kept whatever their age."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from hub.retention import delete_in_batches
from ticketing.models import HostDelivery, WebhookReceipt


def purge_old_records(*, days: int | None = None) -> int:
    days = settings.HUB_LOG_RETENTION_DAYS if days is None else days
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    receipts = delete_in_batches(WebhookReceipt.objects.filter(received_at__lt=cutoff), order_by="received_at")
    finished = HostDelivery.objects.filter(
        created_at__lt=cutoff, state__in=[HostDelivery.State.DELIVERED, HostDelivery.State.FAILED])
    return receipts + delete_in_batches(finished, order_by="created_at", batch=1000)
