"""A fake Halo PSA over real HTTP (stdlib only), written from ../shared/psa/halo.md.

It serves the authorisation server (`/auth/token`, tenant in the query string, form body) and
the resource server (`/api/...`) on one loopback port, as a Halo-hosted instance does:

    with HaloFake(clients=400) as halo:
        provider = HaloProvider(halo.config(), halo.secrets(), Transport(allow_private=True))

Behaviour follows the fact sheet: lists paged with pageinate/page_size/page_no and wrapped as
{"record_count", "<key>": [...]}; configuration lists as bare arrays; every write a POST of a
JSON array (no id = create, id = partial update); ids as real integers (95.0 is refused);
bearer tokens that expire; 401 {"error": "invalid_client"} for a wrong secret or tenant; 403
with an empty body for a missing permission; 400 {"ClassName", "Message"} for business rules.

Knobs for tests (all safe to change while it runs): `latency_ms`, `token_ttl`,
`revoke_secret()`, `expire_tokens()`, `deny("Read: softwarelicensing")`, `fail_next(429, times=3)`,
`auth_path` (move the authorisation server; AuthInfo follows). State is plain Python
(`fake.tickets`, `fake.licences`, ...) and every request is in `fake.requests`.

Run it alone:  python -m tests.fakes.halo_server --port 8766
"""

from __future__ import annotations

import argparse
import json
import secrets as secrets_module
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PAGE_SIZE_MAX = 100
CLOSED_STATUS = 9

# First path segment under /api (lower case) -> the application permission area (seed 002's words).
AREAS = {
    "tickets": "tickets",
    "actions": "tickets",
    "tickettype": "tickets",
    "status": "tickets",
    "priority": "tickets",
    "sla": "tickets",
    "team": "tickets",
    "outcome": "tickets",
    "client": "customers",
    "site": "customers",
    "users": "customers",
    "item": "items",
    "clientcontract": "contracts",
    "invoice": "invoices",
    "softwarelicence": "softwarelicensing",
    "webhook": "webhooks",
}


def permission(method: str, entity: str) -> str | None:
    area = AREAS.get(entity)
    if area is None:
        return None
    if area == "webhooks":
        return "Admin: webhooks"
    return f"{'Read' if method == 'GET' else 'Edit'}: {area}"


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, the form fields, or the raw text
    status: int = 0


@dataclass
class Failure:
    status: int
    path_contains: str = ""
    retry_after: str | None = None
    body: str = ""
    method: str = ""
    after_processing: bool = False  # the work is done, then the answer is lost (a proxy's 502)


class HaloError(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


def _bad(message: str) -> HaloError:
    # Halo's business-rule errors: a serialised .NET exception is one of the shapes S3 parses.
    return HaloError(400, {"ClassName": "HaloValidationException", "Message": message})


def _int_field(row: dict, name: str, index: int, *, required: bool = False) -> int | None:
    value = row.get(name)
    if value is None:
        if required:
            raise HaloError(400, {f"[{index}].{name}": [f"The {name} field is required."]})
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        # What ASP.NET model binding answers when 95.0 or "95" meets an int (fact sheet section 4).
        raise HaloError(400, {f"[{index}].{name}": [f"The JSON value could not be converted to System.Int32. Path: $[{index}].{name}"]})
    return value


@dataclass
class HaloData:
    clients: dict[int, dict] = field(default_factory=dict)
    sites: dict[int, dict] = field(default_factory=dict)
    users: dict[int, dict] = field(default_factory=dict)
    ticket_types: dict[int, dict] = field(default_factory=dict)
    statuses: dict[int, dict] = field(default_factory=dict)
    slas: dict[int, dict] = field(default_factory=dict)
    priorities: list[dict] = field(default_factory=list)
    teams: dict[int, dict] = field(default_factory=dict)
    outcomes: dict[int, dict] = field(default_factory=dict)
    items: dict[int, dict] = field(default_factory=dict)
    licences: dict[int, dict] = field(default_factory=dict)
    contracts: dict[int, dict] = field(default_factory=dict)
    tickets: dict[int, dict] = field(default_factory=dict)
    actions: dict[int, dict] = field(default_factory=dict)
    webhooks: dict[str, dict] = field(default_factory=dict)


NAMED_CLIENTS = ["Acme Corporation", "Globex Ltd", "Initech", "Umbrella Corp.", "Stark Industries", "Wayne Enterprises"]


def seed_data(client_count: int) -> HaloData:
    data = HaloData()
    for n in range(1, client_count + 1):
        name = NAMED_CLIENTS[n - 1] if n <= len(NAMED_CLIENTS) else f"Customer {n:04d} Pty"
        data.clients[n] = {
            "id": n,
            "name": name,
            "inactive": n % 97 == 0,
            "toplevel_id": 1,
            "toplevel_name": "Customers",
            "main_site_id": 1000 + n,
            "main_site_name": "Main Site",
            "ref": f"C{n:04d}",
            "website": "",
        }
        data.sites[1000 + n] = {"id": 1000 + n, "name": "Main Site", "client_id": n, "client_name": name, "inactive": False, "sla_id": 1}
    user_id = 100
    for n in range(1, min(client_count, 10) + 1):
        for first, last in (("General", "User"), ("Ada", "Lovelace"), ("Alan", "Turing")):
            user_id += 1
            data.users[user_id] = {
                "id": user_id,
                "name": f"{first} {last}",
                "firstname": first,
                "surname": last,
                "emailaddress": "" if first == "General" else f"{first.lower()}@client{n}.example",
                "client_id": n,
                "client_name": data.clients[n]["name"],
                "site_id": 1000 + n,
                "site_name": "Main Site",
                "inactive": False,
            }
    data.statuses = {
        s["id"]: s
        for s in (
            {"id": 1, "name": "New", "shortname": "NEW", "type": 1, "sequence": 1},
            {"id": 2, "name": "In Progress", "shortname": "INP", "type": 1, "sequence": 2},
            {"id": 3, "name": "Action Required", "shortname": "ACT", "type": 1, "sequence": 3},
            {"id": 4, "name": "Waiting on User", "shortname": "WAIT", "type": 2, "sequence": 4},
            {"id": 5, "name": "Updated", "shortname": "UPD", "type": 1, "sequence": 5},
            {"id": 8, "name": "Resolved", "shortname": "RES", "type": 1, "sequence": 8},
            {"id": CLOSED_STATUS, "name": "Closed", "shortname": "CLO", "type": 4, "sequence": 9},
        )
    }
    data.slas = {1: {"id": 1, "name": "Standard SLA"}, 2: {"id": 2, "name": "Security SLA"}}
    names = ("Critical", "High", "Medium", "Low")
    for number, name in enumerate(names, start=1):
        data.priorities.append({"id": number, "slaid": 1, "priorityid": number, "name": name, "ishidden": False})
    for number, name in enumerate(names, start=1):
        # Rows of the second SLA have their own row ids, so `id` and `priorityid` differ here.
        data.priorities.append({"id": 10 + number, "slaid": 2, "priorityid": number, "name": f"{name} (Security)", "ishidden": False})
    data.ticket_types = {
        1: {"id": 1, "name": "Incident", "default_sla": 1, "initial_status": 1, "default_priority": 3, "default_team": "1st Line Support", "allowall_status": True, "allowed_status": []},
        3: {
            "id": 3, "name": "Security Alert", "default_sla": 2, "initial_status": 1, "default_priority": 2,
            "default_team": "Security Operations", "allowall_status": False,
            "allowed_status": [{"status_id": s} for s in (1, 2, 4, 8, CLOSED_STATUS)],
        },
        5: {"id": 5, "name": "Service Request", "default_sla": -1, "initial_status": 1, "default_priority": 0, "default_team": "", "allowall_status": True, "allowed_status": []},
    }
    data.teams = {
        1: {"id": 1, "name": "1st Line Support", "inactive": False, "department_id": 1},
        2: {"id": 2, "name": "Security Operations", "inactive": False, "department_id": 1},
        3: {"id": 3, "name": "Old Team", "inactive": True, "department_id": 1},
    }
    data.outcomes = {
        1: {"id": 1, "outcome": "Email User", "buttonname": "Email User", "hidden": False},
        2: {"id": 2, "outcome": "Phone Call", "buttonname": "Phone Call", "hidden": False},
        7: {"id": 7, "outcome": "Private Note", "buttonname": "Private Note", "hidden": False},
        10: {"id": 10, "outcome": "Close Ticket", "buttonname": "Close", "hidden": False},
    }
    data.items = {
        1: {"id": 1, "name": "Email Security (per user)", "isrecurringitem": True, "baseprice": 3.5, "inactive": False, "internalreference": "SEC-USER"},
        2: {"id": 2, "name": "Domain Protection (per domain)", "isrecurringitem": True, "baseprice": 12.0, "inactive": False, "internalreference": "SEC-DOM"},
        3: {"id": 3, "name": "Endpoint Protection (per device)", "isrecurringitem": True, "baseprice": 2.0, "inactive": False, "internalreference": "SEC-DEV"},
    }
    licence_rows = [
        (1, "Email Security", 1, 1, 10),
        (2, "Email Security", 2, 1, 5),
        (3, "Email Security (old)", 2, 1, 3),  # a second licence on the same item: the duplicate case
        (4, "Domain Protection", 1, 2, 2),
    ]
    for licence_id, name, client_id, item_id, count in licence_rows:
        data.licences[licence_id] = _licence(licence_id, name, data.clients[client_id], item_id, data.items[item_id]["name"], count)
    for n in range(1, min(client_count, 5) + 1):
        data.contracts[n] = {"id": n, "client_id": n, "client_name": data.clients[n]["name"], "ref": f"MSA-{n:03d}", "start_date": "2025-01-01T00:00:00", "end_date": "2027-01-01T00:00:00", "status": "Active", "billingperiod": 1}
    return data


def _licence(licence_id: int, name: str, client: dict, item_id: int | None, item_name: str, count: int) -> dict:
    return {
        "id": licence_id,
        "type": 0,
        "name": name,
        "count": count,
        "client_id": client["id"],
        "client_name": client["name"],
        "site_id": -1,
        "site_name": "",
        "item_id": item_id,
        "linked_item": item_name,
        "is_active": True,
        "deleted": False,
    }


class HaloFake:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tenant: str = "acme",
        client_id: str = "hub-client-id",
        client_secret: str = "hub-client-secret-Zq8vKp2N",
        clients: int = 350,
        token_ttl: float = 3600,
        latency_ms: int = 0,
    ):
        self.host, self.port = host, port
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.latency_ms = latency_ms
        self.auth_path = "/auth"
        self.agent = {"id": 12, "name": "hub_api", "email": "hub_api@msp.example", "isapiagent": True, "is_agent": True}
        self.data = seed_data(clients)
        self.denied: set[str] = set()
        self.failures: list[Failure] = []
        self.requests: list[LoggedRequest] = []
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> HaloFake:
        fake = self
        handler = type("BoundHaloHandler", (_Handler,), {"fake": fake})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="halo-fake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HaloFake:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def config(self) -> dict:
        """Connection config as HaloLinkForm produces it."""
        return {"tenant": self.tenant, "resource_server": self.url, "auth_server": "", "client_id": self.client_id}

    def secrets(self) -> dict:
        return {"client_secret": self.client_secret}

    # --- knobs -----------------------------------------------------------------------------------

    def revoke_secret(self, new_secret: str | None = None) -> str:
        """Regenerate the application's secret: the old one stops getting tokens."""
        with self.lock:
            self.client_secret = new_secret or "regenerated-" + secrets_module.token_urlsafe(12)
            return self.client_secret

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def deny(self, *permissions: str) -> None:
        with self.lock:
            self.denied.update(permissions)

    def allow(self, *permissions: str) -> None:
        with self.lock:
            self.denied.difference_update(permissions)

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        path_contains: str = "",
        method: str = "",
        retry_after: str | None = None,
        body: str = "",
        after_processing: bool = False,
    ) -> None:
        """The next `times` matching requests answer `status` (429, 500, 502, ...). Unprocessed,
        unless `after_processing`: then the write happens and only its answer is lost."""
        with self.lock:
            self.failures.extend(
                Failure(status, path_contains.lower(), retry_after, body, method.upper(), after_processing)
                for _ in range(times)
            )

    # --- state for tests ---------------------------------------------------------------------------

    @property
    def tickets(self) -> dict[int, dict]:
        return self.data.tickets

    @property
    def actions(self) -> dict[int, dict]:
        return self.data.actions

    @property
    def licences(self) -> dict[int, dict]:
        return self.data.licences

    @property
    def webhooks(self) -> dict[str, dict]:
        return self.data.webhooks

    def requests_to(self, path_contains: str, method: str | None = None) -> list[LoggedRequest]:
        with self.lock:
            return [
                r for r in self.requests
                if path_contains.lower() in r.path.lower() and (method is None or r.method == method)
            ]

    def clear_log(self) -> None:
        with self.lock:
            self.requests.clear()

    def set_ticket_status(self, ticket_id: int, status_id: int) -> dict:
        """A technician changes a ticket in Halo (for two-way sync tests)."""
        with self.lock:
            ticket = self.data.tickets[ticket_id]
            self._apply_status(ticket, status_id)
            return dict(ticket)

    # --- request handling ----------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, Any, dict]:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        content_type = headers.get("content-type", "")
        text = raw_body.decode("utf-8", errors="replace")
        body: Any = text
        if "json" in content_type and text:
            try:
                body = json.loads(text)
            except ValueError:
                body = HaloError(400, {"": ["The JSON value could not be parsed."]})
        elif "x-www-form-urlencoded" in content_type:
            body = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
        logged = LoggedRequest(method, parts.path, query, dict(headers), body if not isinstance(body, HaloError) else text)
        with self.lock:
            self.requests.append(logged)
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        failure = self._take_failure(method, parts.path)
        try:
            if failure is not None and not failure.after_processing:
                raise HaloError(failure.status, failure.body or None, {"Retry-After": failure.retry_after} if failure.retry_after else {})
            if isinstance(body, HaloError):
                raise body
            status, payload, extra = self._route(method, parts.path, query, headers, body)
        except HaloError as exc:
            status, payload, extra = exc.status, exc.body, exc.headers
        except Exception as exc:  # a bug in the fake answers like a crashing .NET server, not a hang
            status, payload, extra = 500, {"ClassName": type(exc).__name__, "Message": str(exc)}, {}
        if failure is not None and failure.after_processing:
            status, payload, extra = failure.status, failure.body or None, {}
        logged.status = status
        return status, payload, extra

    def _take_failure(self, method: str, path: str) -> Failure | None:
        with self.lock:
            for index, failure in enumerate(self.failures):
                if failure.path_contains in path.lower() and failure.method in ("", method):
                    return self.failures.pop(index)
        return None

    def _route(self, method: str, path: str, query: dict, headers: dict, body: Any) -> tuple[int, Any, dict]:
        lower = path.lower().rstrip("/")
        if lower == (self.auth_path.lower() + "/token") and method == "POST":
            return 200, self._token(query, headers, body), {}
        if lower == "/ticket" and method == "GET":
            return 200, f"<html><body><h1>Halo ticket {query.get('id', '')}</h1></body></html>", {"Content-Type": "text/html"}
        if not lower.startswith("/api/"):
            raise HaloError(404, "<html><body>Not Found</body></html>", {"Content-Type": "text/html"})
        segments = [s for s in path.split("/")[2:] if s]
        entity = segments[0].lower() if segments else ""
        rest = segments[1:]
        if entity == "authinfo":
            info = {"auth_url": self.url + self.auth_path}
            if self.tenant:
                info["tenant_id"] = self.tenant
            return 200, info, {}
        self._check_token(headers)
        needed = permission(method, entity)
        if needed and needed in self.denied:
            return 403, None, {}
        handler = getattr(self, f"_api_{entity}", None)
        if handler is None:
            raise HaloError(404, None)
        with self.lock:
            return 200, handler(method, rest, query, body), {}

    # --- authorisation server ------------------------------------------------------------------

    def _token(self, query: dict, headers: dict, form: Any) -> dict:
        if not isinstance(form, dict) or "x-www-form-urlencoded" not in headers.get("content-type", ""):
            raise HaloError(400, {"error": "invalid_request"})
        if form.get("grant_type") != "client_credentials":
            raise HaloError(400, {"error": "unsupported_grant_type"})
        with self.lock:
            right = (
                form.get("client_id") == self.client_id
                and form.get("client_secret") == self.client_secret
                and query.get("tenant", "") == (self.tenant or "")
            )
            if not right:
                raise HaloError(401, {"error": "invalid_client"})
            token = secrets_module.token_urlsafe(32)
            self.tokens[token] = time.monotonic() + self.token_ttl
        return {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_ttl), "scope": form.get("scope", "all")}

    def _check_token(self, headers: dict) -> None:
        auth = headers.get("authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        with self.lock:
            expires = self.tokens.get(token)
        if not token or expires is None or time.monotonic() >= expires:
            raise HaloError(401, None, {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    # --- listing helpers -------------------------------------------------------------------------

    @staticmethod
    def _page(rows: list[dict], query: dict, key: str) -> dict:
        total = len(rows)
        if query.get("pageinate", "").lower() == "true":
            size = min(int(query.get("page_size") or 50), PAGE_SIZE_MAX)
            page_no = max(1, int(query.get("page_no") or 1))
            start = (page_no - 1) * size
            return {"page_no": page_no, "page_size": size, "record_count": total, key: rows[start:start + size]}
        if query.get("count"):
            return {"record_count": total, key: rows[: int(query["count"])]}
        return {"record_count": total, key: rows}

    @staticmethod
    def _search(rows: list[dict], query: dict, *fields: str) -> list[dict]:
        term = query.get("search", "").strip().lower()
        if not term:
            return rows
        return [r for r in rows if any(term in str(r.get(f, "")).lower() for f in fields)]

    @staticmethod
    def _by_client(rows: list[dict], query: dict) -> list[dict]:
        if query.get("client_id"):
            return [r for r in rows if str(r.get("client_id")) == query["client_id"]]
        return rows

    @staticmethod
    def _one(table: dict, rest: list[str]) -> dict:
        if not rest:
            raise HaloError(405, None)
        try:
            key = int(rest[0])
        except ValueError:
            raise HaloError(400, {"id": ["The value is not valid."]}) from None
        if key not in table:
            raise HaloError(404, None)
        return dict(table[key])

    @staticmethod
    def _array(body: Any) -> list[dict]:
        if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
            raise HaloError(400, {"": ["The JSON value could not be converted to a list. Send an array."]})
        return body

    @staticmethod
    def _answer(saved: list[dict]) -> Any:
        return saved[0] if len(saved) == 1 else saved

    # --- resource server: customers and configuration -------------------------------------------

    def _api_agent(self, method, rest, query, body):
        if rest and rest[0].lower() == "me":
            return dict(self.agent)
        return [dict(self.agent)]

    def _api_client(self, method, rest, query, body):
        if rest:
            return self._one(self.data.clients, rest)
        rows = list(self.data.clients.values())
        if query.get("includeinactive", "").lower() != "true":
            rows = [r for r in rows if not r["inactive"]]
        return self._page(self._search(rows, query, "name", "ref"), query, "clients")

    def _api_site(self, method, rest, query, body):
        if rest:
            return self._one(self.data.sites, rest)
        return self._page(self._by_client(list(self.data.sites.values()), query), query, "sites")

    def _api_users(self, method, rest, query, body):
        if rest:
            return self._one(self.data.users, rest)
        rows = self._by_client(list(self.data.users.values()), query)
        return self._page(self._search(rows, query, "name", "emailaddress"), query, "users")

    def _api_tickettype(self, method, rest, query, body):
        if rest:
            return self._one(self.data.ticket_types, rest)
        return [dict(t) for t in self.data.ticket_types.values()]

    def _api_status(self, method, rest, query, body):
        rows = list(self.data.statuses.values())
        if query.get("tickettype_id"):
            ticket_type = self.data.ticket_types.get(int(query["tickettype_id"]))
            if ticket_type and not ticket_type["allowall_status"]:
                allowed = {s["status_id"] for s in ticket_type["allowed_status"]}
                rows = [r for r in rows if r["id"] in allowed]
        if query.get("excludeclosed", "").lower() == "true":
            rows = [r for r in rows if r["id"] != CLOSED_STATUS]
        return [dict(r) for r in rows]

    def _api_priority(self, method, rest, query, body):
        rows = self.data.priorities
        if query.get("slaid"):
            rows = [r for r in rows if str(r["slaid"]) == query["slaid"]]
        return [dict(r) for r in rows]

    def _api_sla(self, method, rest, query, body):
        if rest:
            sla = self._one(self.data.slas, rest)
            sla["priorities"] = [dict(p) for p in self.data.priorities if p["slaid"] == sla["id"]]
            return sla
        return [dict(s) for s in self.data.slas.values()]

    def _api_team(self, method, rest, query, body):
        return [dict(t) for t in self.data.teams.values()]

    def _api_outcome(self, method, rest, query, body):
        return [dict(o) for o in self.data.outcomes.values()]

    def _api_item(self, method, rest, query, body):
        if rest:
            return self._one(self.data.items, rest)
        return self._page(self._search(list(self.data.items.values()), query, "name"), query, "items")

    def _api_clientcontract(self, method, rest, query, body):
        if rest:
            return self._one(self.data.contracts, rest)
        return self._page(self._by_client(list(self.data.contracts.values()), query), query, "contracts")

    def _api_invoice(self, method, rest, query, body):
        return self._page([], query, "invoices")

    # --- tickets and actions ---------------------------------------------------------------------

    def _api_tickets(self, method, rest, query, body):
        if method == "GET":
            if rest:
                return self._one(self.data.tickets, rest)
            return self._page(self._filter_tickets(query), query, "tickets")
        if method == "DELETE":
            self._one(self.data.tickets, rest)
            self.data.tickets[int(rest[0])]["deleted"] = True
            return None
        saved = []
        for index, row in enumerate(self._array(body)):
            ticket_id = _int_field(row, "id", index)
            saved.append(self._update_ticket(ticket_id, row, index) if ticket_id else self._create_ticket(row, index))
        return self._answer(saved)

    def _filter_tickets(self, query: dict) -> list[dict]:
        rows = [t for t in self.data.tickets.values() if not t.get("deleted")]
        reference = query.get("search_supplier_reference", "").lower()
        if reference:
            rows = [t for t in rows if reference in (t.get("supplier_reference") or "").lower()]
        if query.get("client_id"):
            rows = [t for t in rows if str(t["client_id"]) == query["client_id"]]
        if query.get("status_id"):
            rows = [t for t in rows if str(t["status_id"]) == query["status_id"]]
        if query.get("requesttype_id"):
            rows = [t for t in rows if str(t["tickettype_id"]) == query["requesttype_id"]]
        if query.get("open_only", "").lower() == "true":
            rows = [t for t in rows if not t["hasbeenclosed"]]
        if query.get("closed_only", "").lower() == "true":
            rows = [t for t in rows if t["hasbeenclosed"]]
        if query.get("ticketids"):
            wanted = {int(x) for x in query["ticketids"].split(",") if x.strip().isdigit()}
            rows = [t for t in rows if t["id"] in wanted]
        term = query.get("search", "").lower()
        if term:
            rows = [t for t in rows if term in t["summary"].lower() or term == str(t["id"])]
        # List rows leave out the long text, as Halo's lists do.
        return [{k: v for k, v in t.items() if k not in ("details",)} for t in rows]

    def _create_ticket(self, row: dict, index: int) -> dict:
        client_id = _int_field(row, "client_id", index, required=True)
        client = self.data.clients.get(client_id)
        if client is None:
            raise _bad(f"Client {client_id} does not exist.")
        type_id = _int_field(row, "tickettype_id", index) or 1
        ticket_type = self.data.ticket_types.get(type_id)
        if ticket_type is None:
            raise _bad(f"Ticket type {type_id} does not exist.")
        if not str(row.get("summary") or "").strip():
            raise _bad("Please enter a Summary.")
        ticket_id = max(self.data.tickets, default=1000) + 1
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        ticket = {
            "id": ticket_id,
            "summary": str(row["summary"]),
            "details": str(row.get("details") or ""),
            "client_id": client_id,
            "client_name": client["name"],
            "site_id": client["main_site_id"],
            "site_name": "Main Site",
            "user_id": None,
            "tickettype_id": type_id,
            "status_id": ticket_type["initial_status"],
            "priority_id": ticket_type["default_priority"] or None,
            "sla_id": ticket_type["default_sla"],
            "team": ticket_type["default_team"],
            "agent_id": None,
            "supplier_reference": row.get("supplier_reference") or "",
            "hasbeenclosed": False,
            "dateoccurred": now,
            "last_update": now,
            "deleted": False,
        }
        self._apply(ticket, row, index)
        self.data.tickets[ticket_id] = ticket
        return dict(ticket)

    def _update_ticket(self, ticket_id: int, row: dict, index: int) -> dict:
        ticket = self.data.tickets.get(ticket_id)
        if ticket is None or ticket.get("deleted"):
            raise HaloError(404, None)
        self._apply(ticket, row, index)
        ticket["last_update"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        return dict(ticket)

    def _apply(self, ticket: dict, row: dict, index: int) -> None:
        """Validate and write the fields a ticket POST may carry, as Halo checks them."""
        ticket_type = self.data.ticket_types[ticket["tickettype_id"]]
        if row.get("site_id") is not None:
            site = self.data.sites.get(_int_field(row, "site_id", index))
            if site is None or site["client_id"] != ticket["client_id"]:
                raise _bad(f"Site {row['site_id']} does not belong to client {ticket['client_id']}.")
            ticket["site_id"] = site["id"]
        if row.get("user_id") is not None:
            user = self.data.users.get(_int_field(row, "user_id", index))
            if user is None or user["client_id"] != ticket["client_id"]:
                raise _bad(f"User {row['user_id']} does not belong to client {ticket['client_id']}.")
            if row.get("site_id") is None:
                raise _bad("A Site must be selected when a User is selected.")
            ticket["user_id"] = user["id"]
        if row.get("priority_id") is not None:
            priority_id = _int_field(row, "priority_id", index)
            sla = ticket_type["default_sla"]
            if not any(p["slaid"] == sla and p["priorityid"] == priority_id for p in self.data.priorities):
                raise _bad(f"Priority {priority_id} is not valid for the SLA of ticket type {ticket_type['name']}.")
            ticket["priority_id"] = priority_id
        if row.get("team") is not None:
            team = next((t for t in self.data.teams.values() if t["name"] == row["team"] and not t["inactive"]), None)
            if team is None:
                raise _bad(f"Team '{row['team']}' does not exist.")
            ticket["team"] = team["name"]
        if row.get("status_id") is not None:
            status_id = _int_field(row, "status_id", index)
            if status_id not in self.data.statuses:
                raise _bad(f"Status {status_id} does not exist.")
            if not ticket_type["allowall_status"] and status_id not in {s["status_id"] for s in ticket_type["allowed_status"]}:
                raise _bad(f"Status {status_id} is not allowed for ticket type {ticket_type['name']}.")
            self._apply_status(ticket, status_id)
        for name in ("summary", "details", "supplier_reference"):
            if row.get(name) is not None:
                ticket[name] = str(row[name])

    @staticmethod
    def _apply_status(ticket: dict, status_id: int) -> None:
        ticket["status_id"] = status_id
        ticket["hasbeenclosed"] = status_id == CLOSED_STATUS
        ticket["last_update"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())

    def _api_actions(self, method, rest, query, body):
        if method == "GET":
            if rest:
                return self._one(self.data.actions, rest)
            rows = [a for a in self.data.actions.values() if str(a["ticket_id"]) == query.get("ticket_id", "")]
            if query.get("excludeprivate", "").lower() == "true":
                rows = [a for a in rows if not a["hiddenfromuser"]]
            return {"record_count": len(rows), "actions": rows}
        saved = []
        for index, row in enumerate(self._array(body)):
            ticket_id = _int_field(row, "ticket_id", index, required=True)
            ticket = self.data.tickets.get(ticket_id)
            if ticket is None:
                raise _bad(f"Ticket {ticket_id} does not exist.")
            outcome_id = _int_field(row, "outcome_id", index)
            outcome = self.data.outcomes.get(outcome_id) if outcome_id is not None else next(
                (o for o in self.data.outcomes.values() if row.get("outcome") and o["outcome"] == row["outcome"]), None
            )
            if outcome is None:
                raise _bad("An Outcome must be entered for this Action")
            action_id = max(self.data.actions, default=0) + 1
            action = {
                "id": action_id,
                "ticket_id": ticket_id,
                "outcome_id": outcome["id"],
                "outcome": outcome["outcome"],
                "note": str(row.get("note") or row.get("note_html") or ""),
                "hiddenfromuser": bool(row.get("hiddenfromuser", False)),
                "sendemail": bool(row.get("sendemail", False)),
                "who": self.agent["name"],
                "datetime": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
            }
            if row.get("new_status") is not None:
                self._apply_status(ticket, _int_field(row, "new_status", index))
            self.data.actions[action_id] = action
            saved.append(dict(action))
        return self._answer(saved)

    # --- software licences -----------------------------------------------------------------------

    def _api_softwarelicence(self, method, rest, query, body):
        if method == "GET":
            if rest:
                licence = self._one(self.data.licences, rest)
                if licence.get("deleted"):
                    raise HaloError(404, None)
                return licence
            rows = [r for r in self.data.licences.values() if not r.get("deleted")]
            rows = self._search(self._by_client(rows, query), query, "name")
            return self._page([dict(r) for r in rows], query, "licences")
        if method == "DELETE":
            self._one(self.data.licences, rest)
            self.data.licences[int(rest[0])]["deleted"] = True
            return None
        saved = []
        for index, row in enumerate(self._array(body)):
            licence_id = _int_field(row, "id", index)
            count = _int_field(row, "count", index)
            if count is not None and count < 0:
                raise _bad("The count cannot be negative.")
            if licence_id:
                licence = self.data.licences.get(licence_id)
                if licence is None or licence.get("deleted"):
                    raise HaloError(404, None)
            else:
                client_id = _int_field(row, "client_id", index, required=True)
                client = self.data.clients.get(client_id)
                if client is None:
                    raise _bad(f"Client {client_id} does not exist.")
                if not str(row.get("name") or "").strip():
                    raise _bad("Please enter a Name for the licence.")
                item_id = _int_field(row, "item_id", index)
                if item_id is not None and item_id not in self.data.items:
                    raise _bad(f"Item {item_id} does not exist.")
                licence_id = max(self.data.licences, default=0) + 1
                item_name = self.data.items[item_id]["name"] if item_id else ""
                licence = _licence(licence_id, str(row["name"]), client, item_id, item_name, 0)
                self.data.licences[licence_id] = licence
            for name in ("name", "count", "site_id", "type", "item_id"):
                if name in row and name != "id":
                    licence[name] = row[name]
            saved.append(dict(licence))
        return self._answer(saved)

    # --- webhooks ----------------------------------------------------------------------------------

    def _api_webhook(self, method, rest, query, body):
        if method == "GET":
            if rest:
                webhook = self.data.webhooks.get(rest[0].lower())
                if webhook is None:
                    raise HaloError(404, None)
                return dict(webhook)
            return [dict(w) for w in self.data.webhooks.values()]
        if method == "DELETE":
            if self.data.webhooks.pop(rest[0].lower() if rest else "", None) is None:
                raise HaloError(404, None)
            return None
        saved = []
        for row in self._array(body):
            webhook_id = str(row.get("id") or "").lower()
            if webhook_id and webhook_id not in self.data.webhooks:
                raise HaloError(404, None)
            if not webhook_id:
                if not row.get("url"):
                    raise _bad("Please enter a Payload URL.")
                webhook_id = str(uuid.uuid4())
                self.data.webhooks[webhook_id] = {"id": webhook_id, "active": True, "events": []}
            webhook = self.data.webhooks[webhook_id]
            webhook.update({k: v for k, v in row.items() if k != "id"})
            saved.append(dict(webhook))
        return self._answer(saved)


class _Handler(BaseHTTPRequestHandler):
    fake: HaloFake
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server offers
    # Headers and body leave in two writes; without this, delayed ACKs add ~40 ms per request.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass  # the fake's own request log is the record

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload, extra = self.fake.handle(self.command, self.path, headers, raw)
        extra = dict(extra)
        content_type = extra.pop("Content-Type", "application/json; charset=utf-8")
        if payload is None:
            data = b""
        elif isinstance(payload, str) and content_type.startswith("text/html"):
            data = payload.encode()
        else:
            data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = _serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake Halo PSA.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--clients", type=int, default=350)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--token-ttl", type=float, default=3600)
    args = parser.parse_args(argv)
    fake = HaloFake(host=args.host, port=args.port, clients=args.clients, latency_ms=args.latency_ms, token_ttl=args.token_ttl)
    fake.start()
    print(json.dumps({"url": fake.url, **fake.config(), **fake.secrets()}, indent=2), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
