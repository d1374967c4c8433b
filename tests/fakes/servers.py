"""The three HTTP fake PSAs, started together once for the integration and browser tiers.

`tests/conftest.py: fake_psas` starts them (each on a free loopback port) before any worker
process, so the worker's environment can point at them: `FakePsas.worker_env()` gives it
PSA_ALLOW_PRIVATE_HOSTS, the ConnectWise clientId the fake accepts and the Autotask fake's
zone discovery URL; `FakePsas.settings()` gives the same to the test process (pages and
in-process service calls). `reset()` puts every knob back and clears the request logs; the
`psas` fixture calls it around each test.

`NotAPsa` is a fourth server for bad-input tests: it answers every request with an HTML page,
with invalid JSON, or not at all (a read timeout), as a mistyped URL or a captive proxy would.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tests.fakes.autotask_server import AutotaskFake
from tests.fakes.connectwise_server import FakeConnectWise
from tests.fakes.halo_server import HaloFake

from integrations import registry

# One fake per registered PSA (tests/unit/test_fakes.py checks it): the tiers parametrise over these.
VENDORS = registry.slugs()


class NotAPsa:
    """Answers everything with `mode`: "html" (200 text/html), "bad-json" (200 application/json
    that is not JSON) or "hang" (reads the request, answers nothing for `hang_seconds`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.mode = "html"
        self.hang_seconds = 5.0
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with fake.lock:
                    fake.requests.append((self.command, urlsplit(self.path).path))
                if fake.mode == "hang":
                    time.sleep(fake.hang_seconds)
                    return
                if fake.mode == "bad-json":
                    status, content_type, body = 200, "application/json; charset=utf-8", b'{"CompanyName": "Acme", '
                else:
                    status, content_type = 200, "text/html; charset=utf-8"
                    body = b"<!doctype html><html><body><h1>Welcome</h1><p>Please sign in.</p></body></html>"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's name
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> NotAPsa:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        self.mode = "html"
        with self.lock:
            self.requests.clear()


@dataclass
class FakePsas:
    connectwise: FakeConnectWise
    autotask: AutotaskFake
    halo: HaloFake
    not_a_psa: NotAPsa

    def __post_init__(self) -> None:
        self._halo_secret = self.halo.client_secret

    # --- what the hub needs to reach them -------------------------------------------------------

    def settings(self) -> dict:
        """Django settings of a hub that links these fakes."""
        return {
            "PSA_ALLOW_PRIVATE_HOSTS": True,
            "CONNECTWISE_CLIENT_ID": self.connectwise.client_id,
            "AUTOTASK_ZONE_DISCOVERY_URL": self.autotask.discovery_url,
        }

    def worker_env(self) -> dict[str, str]:
        """The same, as the environment of a worker process."""
        return {
            "PSA_ALLOW_PRIVATE_HOSTS": "true",
            "CONNECTWISE_CLIENT_ID": self.connectwise.client_id,
            "AUTOTASK_ZONE_DISCOVERY_URL": self.autotask.discovery_url,
        }

    def link_values(self, vendor: str) -> dict[str, str]:
        """What an admin types into the vendor's link form (or PUTs as credentials) for the fake."""
        if vendor == "connectwise":
            cw = self.connectwise
            return {"company_id": cw.company_id, "site": cw.base_url, "public_key": cw.public_key,
                    "private_key": cw.private_key}  # fmt: skip
        if vendor == "autotask":
            at = self.autotask
            return {"username": at.username, "secret": at.secret, "integration_code": at.integration_code}
        halo = self.halo
        # Seed 002 shows the Resource Server with /api; the form strips it.
        return {"tenant": halo.tenant, "resource_server": f"{halo.url}/api", "client_id": halo.client_id,
                "client_secret": halo.client_secret}  # fmt: skip

    def secrets(self, vendor: str | None = None) -> list[str]:
        """Every value that must never show in a page, an API answer or the integration log."""
        found = {
            "connectwise": [self.connectwise.private_key, self.connectwise.client_id],
            "autotask": [self.autotask.secret, self.autotask.integration_code],
            "halo": [self._halo_secret, self.halo.client_secret, *self.halo.tokens],
        }
        return [s for v in ([vendor] if vendor else VENDORS) for s in found[v]]

    # --- knobs --------------------------------------------------------------------------------

    def deny_one_permission(self, vendor: str) -> str:
        """Refuse one permission the hub checks; returns the words the hub should use for it."""
        if vendor == "connectwise":
            self.connectwise.deny("service/priorities")
            return "ConnectWise API user does not have permission to access Service > Priority."
        if vendor == "autotask":
            self.autotask.deny("Contracts")
            return "The Autotask API user's security level does not allow it to query Contracts."
        self.halo.deny("Read: softwarelicensing")
        return "Halo PSA refused access: the API application needs the permission “Read: softwarelicensing”"

    def allow_all(self) -> None:
        """Every knob back to a healthy PSA (keys work, nothing denied, no failures queued)."""
        cw, at, halo = self.connectwise, self.autotask, self.halo
        with cw.lock:
            cw.restore()
            cw.allow_all()
            cw.failures.clear()
            cw.latency_ms = 0
        with at.lock:
            at.restore()
            at.denied.clear()
            at._injections.clear()
            at.latency_ms = 0
        with halo.lock:
            halo.client_secret = self._halo_secret
            halo.denied.clear()
            halo.failures.clear()
            halo.latency_ms = 0
        self.not_a_psa.mode = "html"

    def reset(self) -> None:
        """allow_all(), and empty request logs."""
        self.allow_all()
        with self.connectwise.lock:
            self.connectwise.requests.clear()
        self.autotask.reset_log()
        self.halo.clear_log()
        self.not_a_psa.reset()

    # --- what they saw ------------------------------------------------------------------------

    def requests_seen(self, vendor: str) -> Counter:
        """(method, path) of every request the vendor's fake answered, counted."""
        fake = getattr(self, vendor)
        with fake.lock:
            entries = list(fake.requests)
        return Counter((entry.method, unquote(entry.path)) for entry in entries)


@contextlib.contextmanager
def running_fake_psas() -> Iterator[FakePsas]:
    psas = FakePsas(FakeConnectWise(), AutotaskFake(), HaloFake(), NotAPsa())
    psas.connectwise.start()
    psas.autotask.start()
    psas.halo.start()
    psas.not_a_psa.start()
    try:
        yield psas
    finally:
        for server in (psas.connectwise, psas.autotask, psas.halo, psas.not_a_psa):
            server.stop()
