"""Paging helpers (integrations/base/pagination.py)."""

from __future__ import annotations

import pytest

from integrations.base.pagination import follow_cursor, link_next, numbered_pages


def pages_fetcher(pages: dict):
    """fetch(cursor) -> pages[cursor], recording each cursor asked for."""
    asked = []

    def fetch(cursor):
        asked.append(cursor)
        return pages[cursor]

    fetch.asked = asked
    return fetch


# --- follow_cursor ------------------------------------------------------------------------------


def test_follow_cursor_follows_until_the_cursor_is_none():
    fetch = pages_fetcher({None: ([1, 2], "b"), "b": ([3, 4], "c"), "c": ([5], None)})
    assert list(follow_cursor(fetch)) == [1, 2, 3, 4, 5]
    assert fetch.asked == [None, "b", "c"]


def test_follow_cursor_starts_from_first():
    fetch = pages_fetcher({"start": ([1], "next"), "next": ([2], None)})
    assert list(follow_cursor(fetch, "start")) == [1, 2]
    assert fetch.asked == ["start", "next"]


def test_follow_cursor_stops_on_an_empty_page_even_with_a_cursor():
    fetch = pages_fetcher({None: ([1], "b"), "b": ([], "c"), "c": ([99], None)})
    assert list(follow_cursor(fetch)) == [1]
    assert fetch.asked == [None, "b"]


def test_follow_cursor_stops_at_max_pages():
    asked = []

    def endless(cursor):
        asked.append(cursor)
        return [cursor or 0], (cursor or 0) + 1

    assert list(follow_cursor(endless, max_pages=3)) == [0, 1, 2]
    assert len(asked) == 3


def test_follow_cursor_is_lazy():
    asked = []

    def fetch(cursor):
        asked.append(cursor)
        return [cursor or 0], (cursor or 0) + 1

    iterator = follow_cursor(fetch)
    assert next(iterator) == 0
    assert asked == [None]


# --- numbered_pages -----------------------------------------------------------------------------


def test_numbered_pages_stops_on_a_short_page():
    asked = []

    def fetch(page):
        asked.append(page)
        return {1: [1, 2, 3], 2: [4, 5, 6], 3: [7]}[page], None

    assert list(numbered_pages(fetch, page_size=3)) == [1, 2, 3, 4, 5, 6, 7]
    assert asked == [1, 2, 3]


def test_numbered_pages_stops_on_an_empty_page():
    asked = []

    def fetch(page):
        asked.append(page)
        return ([1, 2] if page == 1 else []), None

    assert list(numbered_pages(fetch, page_size=2)) == [1, 2]
    assert asked == [1, 2]


def test_numbered_pages_stops_at_record_count_without_asking_for_an_empty_page():
    asked = []

    def fetch(page):
        asked.append(page)
        return {1: ["a", "b"], 2: ["c", "d"]}[page], 4

    assert list(numbered_pages(fetch, page_size=2)) == ["a", "b", "c", "d"]
    assert asked == [1, 2]


def test_numbered_pages_with_zero_records():
    asked = []

    def fetch(page):
        asked.append(page)
        return [], 0

    assert list(numbered_pages(fetch, page_size=100)) == []
    assert asked == [1]


def test_numbered_pages_stops_at_max_pages():
    asked = []

    def fetch(page):
        asked.append(page)
        return [page, page], None

    assert list(numbered_pages(fetch, page_size=2, max_pages=4)) == [1, 1, 2, 2, 3, 3, 4, 4]
    assert asked == [1, 2, 3, 4]


# --- link_next ------------------------------------------------------------------------------------

NEXT = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0/company/companies?pageSize=50&page=2"
LAST = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0/company/companies?pageSize=50&page=4"
FIRST = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0/company/companies?pageSize=50&page=1"


@pytest.mark.parametrize(
    "header",
    [
        f'<{NEXT}>; rel="next", <{LAST}>; rel="last"',
        f'<{NEXT}>;rel="next",<{LAST}>;rel="last"',
        f'<{FIRST}>; rel="first", <{FIRST}>; rel="prev", <{NEXT}>; rel="next", <{LAST}>; rel="last"',
        f"<{NEXT}>; rel=next",
        f'  <{NEXT}> ;  rel = "next"  ',
    ],
)
def test_link_next_finds_the_next_url(header):
    assert link_next(header) == NEXT


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        f'<{FIRST}>; rel="first", <{FIRST}>; rel="prev", <{LAST}>; rel="last"',
        f'<{LAST}>; rel="last"',
    ],
)
def test_link_next_is_none_at_the_end(header):
    assert link_next(header) is None


def test_link_next_keeps_commas_inside_the_url():
    url = "https://host/apis/3.0/company/companies?conditions=id in (1,2,3)&pageSize=50&page=2"
    header = f'<https://host/apis/3.0/company/companies?conditions=id in (1,2,3)&page=1>; rel="prev", <{url}>; rel="next"'
    assert link_next(header) == url
