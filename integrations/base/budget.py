"""A PSA's request budget: how many requests the hub may send it, and how many at once.

Each vendor declares its own on its provider (`Provider.budget`), from its fact sheet; the hub's
shared limiter (integrations/limits.py) enforces it per connection across every worker.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestBudget:
    max_requests: int  # in any window_seconds-long stretch of time
    window_seconds: int
    max_concurrent: int  # requests in flight at once for one connection
