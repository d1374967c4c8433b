"""A cached PSA list as a page shows it: its items, or why there are none yet (loading, needs
its parent chosen first, the last refresh failed), and whether a refresh is under way. The
ticketing and billing pages build their selects from these; nothing here calls the PSA."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils import timezone

from integrations import services as integration_services
from integrations.models import Connection, Picklist

# A refresh asked for longer ago than this is no longer shown as "refreshing".
REFRESH_SHOWN_FOR = timezone.timedelta(minutes=5)
# Past this, a list still loading says the worker may be down.
SLOW_AFTER = timezone.timedelta(minutes=2)


@dataclass
class CachedList:
    kind: str
    parent_id: str = ""
    state: str = "ready"  # ready | loading | error | needs_parent
    items: list[dict] = field(default_factory=list)
    error: str = ""  # why the list could not be loaded (or why the last refresh failed)
    refreshing: bool = False
    slow: bool = False
    fetched_at: object = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def waiting(self) -> bool:
        return self.state == "loading"

    @property
    def ids(self) -> set[str]:
        return {str(item["id"]) for item in self.items}

    def item(self, value: str) -> dict | None:
        return next((item for item in self.items if str(item["id"]) == str(value)), None)

    def name_of(self, value: str) -> str:
        item = self.item(value)
        return item["name"] if item else ""

    def fill(self, entry: Picklist | None) -> None:
        """Take the state and the active items of the cached entry (None: not cached yet)."""
        now = timezone.now()
        if entry is not None and entry.refresh_requested_at is not None:
            pending = entry.fetched_at is None or entry.refresh_requested_at > entry.fetched_at
            self.refreshing = pending and now - entry.refresh_requested_at < REFRESH_SHOWN_FOR
            self.slow = pending and now - entry.refresh_requested_at > SLOW_AFTER
        if entry is None or entry.fetched_at is None:
            if entry is not None and entry.error:
                self.state, self.error = "error", entry.error
            else:
                self.state = "loading"
            return
        self.state = "ready"
        self.fetched_at = entry.fetched_at
        self.error = entry.error  # a later refresh failed: the list shown is the older one
        self.items = [item for item in entry.items if item.get("active", True)]


def entry_for(connection: Connection, kind: str, parent_id: str = "", *, queue_refresh: bool = True) -> Picklist | None:
    """The cached entry; with `queue_refresh`, a refresh is queued when it is missing or stale."""
    if queue_refresh:
        return integration_services.picklist(connection, kind, parent_id)
    return Picklist.objects.filter(connection=connection, kind=kind, parent_id=parent_id).first()


def cached_list(connection: Connection, kind: str, parent_id: str = "", *, needs_parent: bool = False,
                queue_refresh: bool = True) -> CachedList:  # fmt: skip
    row = CachedList(kind, parent_id)
    if needs_parent and not parent_id:
        row.state = "needs_parent"
        return row
    row.fill(entry_for(connection, kind, parent_id, queue_refresh=queue_refresh))
    return row
