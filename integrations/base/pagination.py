"""Paging helpers shared by the vendor clients. Each stops on an empty page and after
`max_pages`, so a misbehaving PSA cannot keep a worker looping forever."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
MAX_PAGES = 10_000
# One link-value: <URI> then its parameters. A URI may itself contain commas (RFC 3986
# sub-delims, e.g. ConnectWise `conditions=id in (1,2)`), so do not split the header on ",".
_LINK_VALUE = re.compile(r"<([^>]*)>([^<]*)")


def follow_cursor(
    fetch: Callable[[Any], tuple[list[T], Any]], first: Any = None, *, max_pages: int = MAX_PAGES
) -> Iterator[T]:
    """fetch(cursor) -> (items, next cursor or None). Used for Link headers and nextPageUrl."""
    cursor, pages = first, 0
    while pages < max_pages:
        items, cursor = fetch(cursor)
        pages += 1
        yield from items
        if cursor is None or not items:
            return


def numbered_pages(
    fetch: Callable[[int], tuple[list[T], int | None]], *, page_size: int, max_pages: int = MAX_PAGES
) -> Iterator[T]:
    """fetch(page_no starting at 1) -> (items, total count or None). Stops on a short page,
    or once `total` items are seen when the PSA reports a total (Halo's record_count)."""
    seen = 0
    for page_no in range(1, max_pages + 1):
        items, total = fetch(page_no)
        yield from items
        seen += len(items)
        if len(items) < page_size or (total is not None and seen >= total):
            return


def link_next(link_header: str | None) -> str | None:
    """The rel="next" URL of an RFC 5988 Link header (ConnectWise), or None at the end."""
    for url, params in _LINK_VALUE.findall(link_header or ""):
        compact = params.replace(" ", "")
        if 'rel="next"' in compact or "rel=next" in compact:
            return url.strip()
    return None
