"""The hub's pages driven over real HTTP with `requests`, as a browser without JavaScript would."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import requests

STATE = re.compile(r'data-state="(\w+)"')
POLL_URL = re.compile(r'hx-get="([^"]+)"')


def csrf_token(session: requests.Session) -> str:
    token = session.cookies.get("csrftoken")
    assert token, "no csrftoken cookie: did the page render a form?"
    return token


def sign_in(base_url: str, email: str, password: str) -> requests.Session:
    """A session signed in through the sign-in form (CSRF token included)."""
    session = requests.Session()
    page = session.get(f"{base_url}/login/", timeout=10)
    assert page.status_code == 200, page.text[:500]
    response = session.post(
        f"{base_url}/login/",
        data={"username": email, "password": password, "csrfmiddlewaretoken": csrf_token(session)},
        headers={"Referer": f"{base_url}/login/"},
        timeout=10,
    )
    assert response.status_code == 200, response.text[:500]
    assert "/login/" not in response.url, f"sign-in as {email} failed:\n{response.text[:1000]}"
    return session


@dataclass
class PingResult:
    first_state: str
    final_state: str
    status_url: str
    html: str
    seconds: float


def ping_worker(session: requests.Session, base_url: str, timeout: float = 30) -> PingResult:
    """Press "Check the worker now" on the System page, then poll as its HTMX partial does."""
    page = session.get(f"{base_url}/settings/system/", timeout=10)
    assert page.status_code == 200, page.text[:500]
    started = time.monotonic()
    response = session.post(
        f"{base_url}/settings/system/ping/",
        headers={"X-CSRFToken": csrf_token(session), "HX-Request": "true", "Referer": page.url},
        timeout=10,
    )
    assert response.status_code == 200, response.text[:500]
    first_state = STATE.search(response.text).group(1)
    html = response.text
    poll = POLL_URL.search(html)
    assert poll, f"the ping partial has no status URL to poll:\n{html}"
    status_url = base_url + poll.group(1)
    state = first_state
    while state != "answered" and time.monotonic() - started < timeout:
        time.sleep(0.3)
        html = session.get(status_url, headers={"HX-Request": "true"}, timeout=10).text
        state = STATE.search(html).group(1)
    return PingResult(first_state, state, status_url, html, time.monotonic() - started)
