"""Retention: deleting old rows in small batches, shared by the log and the webhook records."""

from __future__ import annotations

import time

from django.db import transaction
from django.db.models import QuerySet


def delete_in_batches(rows: QuerySet, *, order_by: str, batch: int = 5000, max_batches: int = 500,
                      pause: float = 0.0) -> int:
    """Delete `rows` oldest first, `batch` ids at a time: each batch is one short transaction
    (select ids, DELETE ... WHERE id IN), so no lock is held for long and writers are never
    blocked behind one huge DELETE. Returns the number of rows deleted (cascades not counted)."""
    deleted = 0
    for _ in range(max_batches):
        with transaction.atomic():
            ids = list(rows.order_by(order_by).values_list("id", flat=True)[:batch])
            if ids:
                rows.model.objects.filter(id__in=ids).delete()
        deleted += len(ids)
        if len(ids) < batch:
            break
        if pause:
            time.sleep(pause)
    return deleted
