"""Per-connection request budgets and concurrency caps, shared by every worker process.

They live in Django's cache: Redis in production (atomic INCR, shared by all workers), a
file cache in the embedded default (one machine, good enough). Each PSA declares its budget on
its provider (`Provider.budget`, from its fact sheet, below the PSA's own limit since the MSP's
other integrations share it).
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from django.core.cache import cache

from integrations.base.budget import RequestBudget
from integrations.base.errors import RateLimitedError

# Buckets per window: the budget is checked over a sliding window of this many slices.
_SLICES = 60


class CacheLimiter:
    """integrations.base.client.Limiter over Django's cache, for one connection."""

    def __init__(
        self,
        connection_id: str,
        policy: RequestBudget,
        *,
        max_wait: float = 30.0,
        lease_seconds: int = 300,
        sleep=time.sleep,
        clock=time.time,
    ):
        self.prefix = f"psa-limit:{connection_id}"
        self.policy = policy
        self.max_wait = max_wait
        self.lease_seconds = lease_seconds
        self.sleep = sleep
        self.clock = clock

    @contextlib.contextmanager
    def acquire(self, bucket: str):
        slot = self._take_slot(bucket)
        try:
            self._spend_one()
            yield
        finally:
            cache.delete(slot)

    # A slot is a cache key added with a lease: a worker killed mid-request frees it on expiry.
    def _take_slot(self, bucket: str) -> str:
        deadline = self.clock() + self.max_wait
        token = uuid.uuid4().hex
        while True:
            for index in range(self.policy.max_concurrent):
                key = f"{self.prefix}:slot:{bucket}:{index}"
                if cache.add(key, token, timeout=self.lease_seconds):
                    return key
            if self.clock() >= deadline:
                raise RateLimitedError(
                    "Too many requests to the PSA are already running for this connection; the hub will try again shortly.",
                    retry_after=5,
                )
            self.sleep(random.uniform(0.05, 0.25))

    def _spend_one(self) -> None:
        slice_seconds = max(1, self.policy.window_seconds // _SLICES)
        # The current slice plus every earlier one that overlaps a window ending now: any
        # window_seconds-long stretch of time then holds at most max_requests.
        earlier = -(-self.policy.window_seconds // slice_seconds)
        while True:
            now = self.clock()
            current = int(now // slice_seconds)
            key = f"{self.prefix}:n:{current}"
            cache.add(key, 0, timeout=(earlier + 1) * slice_seconds)
            mine = cache.incr(key)
            window = [f"{self.prefix}:n:{current - i}" for i in range(1, earlier + 1)]
            used = mine + sum(cache.get_many(window).values())
            if used <= self.policy.max_requests:
                return
            # Over budget: give the request back and wait for the oldest slice to expire.
            cache.decr(key)
            wait = slice_seconds - (now % slice_seconds)
            if wait > self.max_wait:
                raise RateLimitedError("The PSA's request budget is used up for now; the hub will try again later.", retry_after=wait)
            self.sleep(wait)
