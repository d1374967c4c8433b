"""A fake ConnectWise Manage over real HTTP, written from ../shared/psa/connectwise.md.

It serves `login/companyinfo`, `system/info` and the list, ticket, agreement, catalog and
callback endpoints the hub uses, with ConnectWise's Basic auth and `clientId`, `conditions`
(the operators the hub sends and a few more), `orderBy`, `fields`, `page`/`pageSize` with a
Link header, CW's error bodies, and null-valued properties left out of answers.

Knobs for tests: `latency_ms`, `revoke()` the keys, `deny("service/priorities")` (403 with
CW's Security body), `fail_next(429, count=3, retry_after=0)` / `fail_next(500, ...)`, and the
in-memory state (`tickets`, `notes`, `additions`, `agreements`, `callbacks`, `requests`).

Where the fact sheet marks ConnectWise's behaviour UNCONFIRMED (missing clientId, bad-key
body, inactive catalog item on an addition, unknown PATCH path), this fake picks one answer
and says so beside it.

    python -m tests.fakes.connectwise_server --port 8123
"""

from __future__ import annotations

import argparse
import base64
import copy
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

SECURITY = {"code": "Security", "message": "You do not have security permission to perform this action."}
ENDPOINT_MISSING = {"code": "ConnectWiseApi", "message": "The endpoint does not exist."}
# The body of a refused login is UNCONFIRMED; this is the one seen in a public issue.
UNAUTHENTICATED = {"code": "ConnectWiseApi", "message": "UserNotAuthenticated"}
TOO_MANY = {"error": "ConnectWiseAPI", "message": "Too many requests. Please try again in 30 seconds."}
SERVER_ERROR = {"code": "ConnectWiseApi", "message": "A timeout has occured. Please try again.", "errors": None}
AGREEMENT_STATUSES = {"Active", "Cancelled", "Expired", "Inactive"}
CALLBACK_LEVELS = {
    "ticket": {"owner", "board", "project", "phase", "status", "ticket", "integratortag"},
    "agreement": {"owner", "type", "company", "agreement"},
    "company": {"owner", "status", "type", "territory", "company", "integratortag"},
    "contact": {"owner", "type", "territory", "company", "contact"},
    "productcatalog": {"owner"},
}


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, status: int, body: dict | None, headers: dict | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def invalid(resource: str, *errors: tuple[str, str, str]) -> ApiError:
    return ApiError(
        400,
        {
            "code": "InvalidObject",
            "message": f"{resource} object is invalid",
            "errors": [
                {"code": code, "message": message, "resource": resource, "field": fld} for code, message, fld in errors
            ],
        },
    )


def not_found(message: str) -> ApiError:
    return ApiError(404, {"code": "NotFound", "message": message})


def find_condition(message: str) -> ApiError:
    return ApiError(400, {"code": "ApiFindCondition", "message": message})


# --- conditions -----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<date>\[[^\]]*\])
      | (?P<op><=|>=|!=|=|<|>)
      | (?P<paren>[(),])
      | (?P<word>[A-Za-z0-9_./\-]+)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "like", "contains", "in", "null", "true", "false"}


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise find_condition(f"Invalid condition near “{text[position:position + 20]}”.")
        position = match.end()
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
    return tokens


class Conditions:
    """CW's condition language over in-memory records: and/or/not, parentheses, comparisons,
    like/contains/in, null, True/False, [datetimes], and reference paths with `/`."""

    def __init__(self, text: str, known: set[str], enums: dict[str, set[str]] | None = None):
        self.tokens = _tokens(text)
        self.position = 0
        self.known = known
        self.enums = enums or {}
        self.tree = self._expression()
        if self.position != len(self.tokens):
            raise find_condition(f"Unexpected “{self.tokens[self.position][1]}” in conditions.")

    def _peek(self, lower: bool = True) -> str:
        if self.position >= len(self.tokens):
            return ""
        value = self.tokens[self.position][1]
        return value.lower() if lower else value

    def _take(self) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise find_condition("The conditions end too early.")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def _expression(self):
        node = self._term()
        while self._peek() == "or":
            self._take()
            node = ("or", node, self._term())
        return node

    def _term(self):
        node = self._factor()
        while self._peek() == "and":
            self._take()
            node = ("and", node, self._factor())
        return node

    def _factor(self):
        if self._peek() == "(":
            self._take()
            node = self._expression()
            if self._take()[1] != ")":
                raise find_condition("Missing “)” in conditions.")
            return node
        if self._peek() == "not":
            self._take()
            return ("not", self._factor())
        kind, name = self._take()
        if kind != "word" or name.lower() in _KEYWORDS:
            raise find_condition(f"Expected a field name, found “{name}”.")
        if name.split("/")[0] not in self.known:
            raise find_condition(f"{name} is not a recognized name.")
        negate = False
        if self._peek() == "not":
            self._take()
            negate = True
        kind, op = self._take()
        op = op.lower()
        if op == "in":
            if self._take()[1] != "(":
                raise find_condition("Expected “(” after in.")
            values = [self._value(name)]
            while self._peek() == ",":
                self._take()
                values.append(self._value(name))
            if self._take()[1] != ")":
                raise find_condition("Missing “)” after the in list.")
            node = ("in", name, values)
        elif kind == "op" or op in ("like", "contains"):
            node = ("cmp", name, op, self._value(name))
        else:
            raise find_condition(f"Unknown operator “{op}”.")
        return ("not", node) if negate else node

    def _value(self, name: str):
        kind, raw = self._take()
        if kind == "string":
            value = raw[1:-1].replace('\\"', '"').replace("\\'", "'")
            allowed = self.enums.get(name)
            if allowed is not None and value not in allowed:
                raise find_condition("Enum value supplied was invalid")
            return value
        if kind == "date":
            return raw[1:-1]
        lowered = raw.lower()
        if lowered == "null":
            return None
        if lowered in ("true", "false"):
            return lowered == "true"
        try:
            return int(raw)
        except ValueError:
            try:
                return float(raw)
            except ValueError:
                raise find_condition(f"“{raw}” is not a value.") from None

    def matches(self, record: dict) -> bool:
        return self._eval(self.tree, record)

    def _eval(self, node, record) -> bool:
        kind = node[0]
        if kind == "or":
            return self._eval(node[1], record) or self._eval(node[2], record)
        if kind == "and":
            return self._eval(node[1], record) and self._eval(node[2], record)
        if kind == "not":
            return not self._eval(node[1], record)
        if kind == "in":
            actual = lookup(record, node[1])
            return any(_equal(actual, value) for value in node[2])
        _, name, op, value = node
        actual = lookup(record, name)
        if op == "=":
            return _equal(actual, value)
        if op == "!=":
            return not _equal(actual, value)
        if op in ("like", "contains"):
            if actual is None:
                return False
            text, wanted = str(actual).lower(), str(value).lower()
            if op == "contains":
                return wanted in text
            pattern = "".join(".*" if ch in "%*" else re.escape(ch) for ch in wanted)
            return re.fullmatch(pattern, text, re.DOTALL) is not None
        if actual is None or value is None:
            return False
        try:
            return {"<": actual < value, "<=": actual <= value, ">": actual > value, ">=": actual >= value}[op]
        except TypeError:
            return False


def lookup(record: dict, path: str):
    if path == "lastUpdated" and "lastUpdated" not in record and isinstance(record.get("_info"), dict):
        path = "_info/lastUpdated"  # ConnectWise's conditions name _info.lastUpdated so
    value = record
    for part in path.split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _equal(actual, wanted) -> bool:
    if wanted is None:
        return actual is None
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return bool(actual) == wanted if isinstance(wanted, bool) else False
    if isinstance(wanted, (int, float)) and isinstance(actual, (int, float)):
        return float(actual) == float(wanted)
    if actual is None:
        return False
    return str(actual).lower() == str(wanted).lower()


def project(record: dict, fields: list[str]) -> dict:
    """A partial response: `fields=id,name,status/id`."""
    result: dict = {}
    for path in fields:
        parts = path.split("/")
        source, target = record, result
        for index, part in enumerate(parts):
            if not isinstance(source, dict) or part not in source:
                break
            if index == len(parts) - 1:
                target[part] = copy.deepcopy(source[part])
            else:
                source = source[part]
                target = target.setdefault(part, {})
    return result


def without_nulls(value):
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


# --- the fake ---------------------------------------------------------------------------------


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict
    headers: dict
    body: object
    status: int = 0


@dataclass
class Failure:
    status: int
    count: int
    path: str = ""
    retry_after: float | None = None


@dataclass
class Collection:
    records: dict = field(default_factory=dict)
    known: set = field(default_factory=set)


class FakeConnectWise:
    def __init__(
        self,
        *,
        company_id: str = "acme",
        company_name: str = "Acme IT Services",
        public_key: str = "PubKey1234567890",
        private_key: str = "PrivKeySecret9876",
        client_id: str = "00000000-hub0-test-0000-clientid0001",
        codebase: str = "v2025_1/",
        latency_ms: int = 0,
        bulk_companies: int = 1200,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.company_id = company_id
        self.company_name = company_name
        self.public_key = public_key
        self.private_key = private_key
        self.client_id = client_id
        self.codebase = codebase
        self.latency_ms = latency_ms
        self.host = host
        self.requested_port = port
        self.lock = threading.RLock()
        self.revoked = False
        self.denied: list[tuple[str, set[str] | None]] = []
        self.failures: list[Failure] = []
        self.requests: list[LoggedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(10_000)
        self._ticket_ids = itertools.count(5000)
        self.seed(bulk_companies)

    # --- knobs ----------------------------------------------------------------------------------

    def revoke(self) -> None:
        """The keys stop working (regenerated or the API member deactivated)."""
        self.revoked = True

    def restore(self) -> None:
        self.revoked = False

    def deny(self, resource_prefix: str, methods: set[str] | None = None) -> None:
        """403 with CW's Security body for requests on resources starting with the prefix."""
        self.denied.append((resource_prefix.strip("/").lower(), {m.upper() for m in methods} if methods else None))

    def allow_all(self) -> None:
        self.denied.clear()

    def fail_next(self, status: int, count: int = 1, *, path: str = "", retry_after: float | None = None) -> None:
        """Answer the next `count` API requests (on resources starting with `path`) with `status`."""
        self.failures.append(Failure(status, count, path.strip("/").lower(), retry_after))

    # --- state for tests ------------------------------------------------------------------------

    @property
    def tickets(self) -> dict:
        return self.data["tickets"].records

    @property
    def agreements(self) -> dict:
        return self.data["agreements"].records

    @property
    def additions(self) -> dict:
        return self.data["additions"].records

    @property
    def callbacks(self) -> dict:
        return self.data["callbacks"].records

    @property
    def catalog(self) -> dict:
        return self.data["catalog"].records

    @property
    def boards(self) -> dict:
        return self.data["boards"].records

    def notes(self, ticket_id: int) -> list[dict]:
        return [n for n in self.data["notes"].records.values() if n["ticketId"] == int(ticket_id)]

    def api_requests(self, method: str | None = None, resource: str = "") -> list[LoggedRequest]:
        """Logged API calls (not companyinfo) whose resource starts with `resource`."""
        marker = "apis/3.0/"
        found = []
        for entry in list(self.requests):
            if marker not in entry.path or (method and entry.method != method.upper()):
                continue
            if entry.path.split(marker, 1)[1].startswith(resource):
                found.append(entry)
        return found

    # --- serving --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("start() the fake first")
        return self._server.server_address[1]

    @property
    def site(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.site}"

    def provider_config(self) -> dict:
        """config for ConnectWiseProvider pointed at this fake (with Transport(allow_private=True))."""
        return {
            "company_id": self.company_id,
            "site": self.site,
            "api_host": self.site,
            "public_key": self.public_key,
            "client_id": self.client_id,
            "scheme": "http",
        }

    def provider_secrets(self) -> dict:
        return {"private_key": self.private_key}

    def start(self) -> str:
        if self._server is not None:
            return self.base_url
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = ThreadingHTTPServer((self.host, self.requested_port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-connectwise", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeConnectWise:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the request path -----------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict, raw: bytes, host: str) -> tuple[int, dict, bytes]:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        parts = urlsplit(target)
        path = unquote(parts.path)
        query_pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = {k.lower(): v for k, v in query_pairs}
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        entry = LoggedRequest(method, path, dict(query_pairs), dict(headers), body)
        with self.lock:
            self.requests.append(entry)
        try:
            status, payload, extra = self._dispatch(method, path, query, query_pairs, headers, body, host)
        except ApiError as error:
            status, payload, extra = error.status, error.body, error.headers
        entry.status = status
        response_headers = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-cache"}
        response_headers.update(extra or {})
        if status == 204:
            return status, response_headers, b""
        if payload is _HTML:
            response_headers["Content-Type"] = "text/html"
            return status, response_headers, b"<html><body>Not the API</body></html>"
        return status, response_headers, json.dumps(without_nulls(payload)).encode()

    def _dispatch(self, method, path, query, pairs, headers, body, host):
        info = re.fullmatch(r"/login/companyinfo/([^/]+)/?", path, re.IGNORECASE)
        if info:
            if method != "GET":
                raise ApiError(405, {"code": "ConnectWiseApi", "message": "Method not allowed."})
            return 200, self._company_info(info.group(1)), {}
        api = re.fullmatch(r"/([A-Za-z0-9_.]+)/+apis/3\.0/(.*)", path)
        if not api:
            return 404, _HTML, {}
        resource = api.group(2).strip("/")
        self._inject_failure(resource)
        self._authenticate(headers)
        lowered = resource.lower()
        for prefix, methods in self.denied:
            if lowered.startswith(prefix) and (methods is None or method in methods):
                raise ApiError(403, SECURITY)
        with self.lock:
            status, payload = self._route(method, resource, query, body)
        extra = {"api-current-version": "2025.1", "x-server-name": "fake-connectwise"}
        if isinstance(payload, _Page):
            extra["Link"] = payload.link(f"http://{host}{path}", pairs)
            payload = payload.items
        return status, payload, extra

    def _inject_failure(self, resource: str) -> None:
        with self.lock:
            for failure in self.failures:
                if failure.count > 0 and resource.lower().startswith(failure.path):
                    failure.count -= 1
                    headers = {}
                    if failure.retry_after is not None:
                        headers["Retry-After"] = str(int(failure.retry_after))
                    raise ApiError(failure.status, TOO_MANY if failure.status == 429 else SERVER_ERROR, headers)

    def _authenticate(self, headers: dict) -> None:
        lowered = {k.lower(): v for k, v in headers.items()}
        expected = base64.b64encode(f"{self.company_id}+{self.public_key}:{self.private_key}".encode()).decode()
        authorization = lowered.get("authorization", "")
        if self.revoked or authorization != f"Basic {expected}":
            raise ApiError(401, UNAUTHENTICATED)
        # What ConnectWise answers without a clientId is UNCONFIRMED (401 or 400); this fake says 401.
        if lowered.get("clientid") != self.client_id:
            raise ApiError(401, {"code": "Unauthorized", "message": "A valid clientId header is required."})

    def _company_info(self, company_id: str):
        if company_id.lower() != self.company_id.lower():
            return None  # ConnectWise answers an unknown company with JSON null, not 404
        return {
            "CompanyName": self.company_name,
            "Codebase": self.codebase,
            "VersionCode": "v2025.1",
            "VersionNumber": "v4.6.12345",
            "CompanyID": self.company_id,
            "IsCloud": True,
        }

    # --- routing --------------------------------------------------------------------------------

    def _route(self, method: str, resource: str, query: dict, body):
        parts = resource.split("/")
        lowered = [p.lower() for p in parts]
        counting = lowered[-1] == "count"
        if counting:
            parts, lowered = parts[:-1], lowered[:-1]
        key = "/".join(p if not p.isdigit() else "{id}" for p in lowered)
        ids = [int(p) for p in parts if p.isdigit()]
        routes = {
            "system/info": self._system_info,
            "company/companies": lambda m, q, b: self._list("companies", m, q),
            "company/companies/{id}": lambda m, q, b: self._one("companies", ids[0], "Company", m, q),
            "company/contacts": lambda m, q, b: self._list("contacts", m, q),
            "service/boards": lambda m, q, b: self._list("boards", m, q),
            "service/boards/{id}": lambda m, q, b: self._one("boards", ids[0], "Service Board", m, q),
            "service/boards/{id}/statuses": lambda m, q, b: self._board_child("statuses", ids[0], m, q),
            "service/boards/{id}/types": lambda m, q, b: self._board_child("types", ids[0], m, q),
            "service/boards/{id}/subtypes": lambda m, q, b: self._board_child("subtypes", ids[0], m, q),
            "service/boards/{id}/items": lambda m, q, b: self._board_child("items", ids[0], m, q),
            "service/boards/{id}/teams": lambda m, q, b: self._board_child("teams", ids[0], m, q),
            "service/priorities": lambda m, q, b: self._list("priorities", m, q),
            "service/sources": lambda m, q, b: self._list("sources", m, q),
            "service/tickets": self._tickets,
            "service/tickets/{id}": lambda m, q, b: self._ticket(ids[0], m, q, b),
            "service/tickets/{id}/notes": lambda m, q, b: self._notes(ids[0], m, q, b),
            "finance/agreements": lambda m, q, b: self._list("agreements", m, q),
            "finance/agreements/{id}": lambda m, q, b: self._one("agreements", ids[0], "Agreement", m, q),
            "finance/agreements/{id}/additions": lambda m, q, b: self._additions(ids[0], m, q, b),
            "finance/agreements/{id}/additions/{id}": lambda m, q, b: self._addition(ids[0], ids[1], m, q, b),
            "procurement/catalog": lambda m, q, b: self._list("catalog", m, q),
            "procurement/catalog/{id}": lambda m, q, b: self._one("catalog", ids[0], "Catalog Item", m, q),
            "system/callbacks": self._callbacks,
            "system/callbacks/{id}": lambda m, q, b: self._callback(ids[0], m, q, b),
        }
        handler = routes.get(key)
        if handler is None:
            raise ApiError(404, ENDPOINT_MISSING)
        if counting:
            if method != "GET":
                raise ApiError(405, {"code": "ConnectWiseApi", "message": "Method not allowed."})
            page = handler("GET", {**query, "pagesize": "1000", "page": "1", "_count": "1"}, None)[1]
            return 200, {"count": page.total if isinstance(page, _Page) else 0}
        return handler(method, query, body)

    # --- generic lists --------------------------------------------------------------------------

    def _select(self, name: str, query: dict, records=None) -> list[dict]:
        collection = self.data[name]
        rows = list((records if records is not None else collection.records).values())
        if query.get("conditions"):
            enums = {"agreementStatus": AGREEMENT_STATUSES} if name == "agreements" else {}
            condition = Conditions(query["conditions"], collection.known, enums)
            rows = [r for r in rows if condition.matches(r)]
        rows.sort(key=lambda r: r["id"])
        for clause in reversed([c.strip() for c in query.get("orderby", "").split(",") if c.strip()]):
            fieldname, _, direction = clause.partition(" ")
            if fieldname.split("/")[0] not in collection.known:
                raise find_condition(f"{fieldname} is not a recognized name.")
            rows.sort(
                key=lambda r: (lookup(r, fieldname) is None, _sort_key(lookup(r, fieldname))),
                reverse=direction.strip().lower() == "desc",
            )
        return rows

    def _page(self, rows: list[dict], query: dict) -> _Page:
        try:
            size = int(query.get("pagesize", 25))
            number = int(query.get("page", 1))
        except ValueError:
            raise ApiError(400, {"code": "InvalidObject", "message": "page and pageSize must be numbers."}) from None
        size = max(1, min(size, 1000))
        number = max(1, number)
        fields = [f.strip() for f in query.get("fields", "").split(",") if f.strip()]
        chunk = rows[(number - 1) * size : number * size]
        items = [project(r, fields) if fields else copy.deepcopy(r) for r in chunk]
        return _Page(items, number, size, len(rows))

    def _list(self, name: str, method: str, query: dict, records=None):
        if method != "GET":
            raise ApiError(405, {"code": "ConnectWiseApi", "message": "Method not allowed."})
        return 200, self._page(self._select(name, query, records), query)

    def _one(self, name: str, record_id: int, label: str, method: str, query: dict):
        if method != "GET":
            raise ApiError(405, {"code": "ConnectWiseApi", "message": "Method not allowed."})
        record = self.data[name].records.get(record_id)
        if record is None:
            raise not_found(f"{label} {record_id} not found")
        fields = [f.strip() for f in query.get("fields", "").split(",") if f.strip()]
        return 200, project(record, fields) if fields else copy.deepcopy(record)

    def _board_child(self, name: str, board_id: int, method: str, query: dict):
        if board_id not in self.boards:
            raise not_found(f"Service Board {board_id} not found")
        records = {k: v for k, v in self.data[name].records.items() if _board_id(v) == board_id}
        return self._list(name, method, query, records)

    def _system_info(self, method, query, body):
        return 200, {
            "version": "v2025.1.12345",
            "isCloud": True,
            "serverTimeZone": "Eastern Standard Time",
            "licenseBits": [],
            "cloudRegion": "NA",
            "maxWorkFlowRecordsAllowed": 10000,
        }

    # --- tickets --------------------------------------------------------------------------------

    def _tickets(self, method, query, body):
        if method == "GET":
            return self._list("tickets", method, query)
        if method != "POST":
            raise ApiError(405, {"code": "ConnectWiseApi", "message": "Method not allowed."})
        if not isinstance(body, dict):
            raise invalid("ticket", ("InvalidObject", "The request body must be a ticket object.", ""))
        summary = body.get("summary")
        if not summary:
            raise invalid("ticket", ("MissingRequiredField", "The summary field is required.", "summary"))
        if len(summary) > 100:
            raise invalid(
                "ticket",
                ("MaxLengthField", "The field summary must be a string with a maximum length of 100.", "summary"),
            )
        company = self._reference("companies", body.get("company"), "company", "Company", required=True)
        board = self._reference("boards", body.get("board") or {"id": 1}, "board", "Service Board", required=True)
        if not any(t["defaultFlag"] for t in self._children("teams", board["id"])):
            # Whether an explicit team avoids this is UNCONFIRMED; the fake refuses regardless.
            raise invalid("ticket", ("InvalidObject", "Cannot find default team for board specified", "board"))
        ticket = {
            "id": next(self._ticket_ids),
            "summary": summary,
            "recordType": "ServiceTicket",
            "board": {"id": board["id"], "name": board["name"]},
            "company": _company_ref(company),
            "closedFlag": False,
            "externalXRef": body.get("externalXRef"),
            "poNumber": body.get("poNumber"),
            "severity": body.get("severity", "Medium"),
            "impact": body.get("impact", "Medium"),
            "_info": {"dateEntered": now_iso(), "lastUpdated": now_iso(), "enteredBy": self.public_key},
        }
        status = self._board_value("statuses", board, body.get("status"), "Service Status", "status")
        if status is None:
            status = next((s for s in self._children("statuses", board["id"]) if s["defaultFlag"]), None)
        self._set_status(ticket, status)
        for name, collection, label in (
            ("type", "types", "Type"),
            ("subType", "subtypes", "Subtype"),
            ("item", "items", "Item"),
            ("team", "teams", "Team"),
        ):
            value = self._board_value(collection, board, body.get(name), label, name)
            ticket[name] = {"id": value["id"], "name": value["name"]} if value else None
        priority = self._reference("priorities", body.get("priority"), "priority", "Priority")
        priority = priority or next(p for p in self.data["priorities"].records.values() if p["defaultFlag"])
        ticket["priority"] = {"id": priority["id"], "name": priority["name"], "sort": priority["sortOrder"]}
        source = self._reference("sources", body.get("source"), "source", "Source")
        ticket["source"] = {"id": source["id"], "name": source["name"]} if source else None
        contact = self._reference("contacts", body.get("contact"), "contact", "Contact")
        ticket["contact"] = (
            {"id": contact["id"], "name": f"{contact['firstName']} {contact['lastName']}"} if contact else None
        )
        self.tickets[ticket["id"]] = ticket
        for text_field, flag in (
            ("initialDescription", "detailDescriptionFlag"),
            ("initialInternalAnalysis", "internalAnalysisFlag"),
            ("initialResolution", "resolutionFlag"),
        ):
            if body.get(text_field):
                self._add_note(ticket["id"], {"text": body[text_field], flag: True})
        return 201, copy.deepcopy(ticket)

    def _ticket(self, ticket_id, method, query, body):
        ticket = self.tickets.get(ticket_id)
        if ticket is None:
            raise not_found(f"Ticket {ticket_id} not found")
        if method == "GET":
            return self._one("tickets", ticket_id, "Ticket", method, query)
        if method != "PATCH":
            raise ApiError(405, {"code": "ConnectWiseApi", "message": "Method not allowed."})
        if not isinstance(body, list):
            # The error for a non-array PATCH body is UNCONFIRMED.
            raise invalid("ticket", ("InvalidObject", "A PATCH body must be an array of operations.", ""))
        board = self.boards[ticket["board"]["id"]]
        for operation in body:
            path = str(operation.get("path", "")).lstrip("/")
            value = operation.get("value")
            if "/" in path:
                continue  # the vendor warns: a path inside an object answers 200 and changes nothing
            if operation.get("op") not in ("add", "replace", "remove"):
                raise invalid("ticket", ("InvalidField", f"Unknown op {operation.get('op')}", "op"))
            if path == "status":
                self._set_status(ticket, self._board_value("statuses", board, value, "Service Status", "status"))
            elif path == "priority":
                priority = self._reference("priorities", value, "priority", "Priority", required=True)
                ticket["priority"] = {"id": priority["id"], "name": priority["name"], "sort": priority["sortOrder"]}
            elif path in ("summary", "externalXRef", "poNumber", "severity", "impact"):
                if path == "summary" and len(str(value)) > 100:
                    raise invalid(
                        "ticket",
                        (
                            "MaxLengthField",
                            "The field summary must be a string with a maximum length of 100.",
                            "summary",
                        ),
                    )
                ticket[path] = value
            else:
                # Unknown or unsupported paths: the vendor's answer is UNCONFIRMED.
                raise invalid("ticket", ("InvalidField", f"{path} cannot be patched", path))
        ticket["_info"]["lastUpdated"] = now_iso()
        return 200, copy.deepcopy(ticket)

    def _set_status(self, ticket: dict, status: dict | None) -> None:
        if status is None:
            return
        ticket["status"] = {"id": status["id"], "name": status["name"]}
        if status["closedStatus"] and not ticket.get("closedFlag"):
            ticket.update(closedFlag=True, closedDate=now_iso(), closedBy=self.public_key)
        elif not status["closedStatus"]:
            ticket.update(closedFlag=False, closedDate=None, closedBy=None)

    def _notes(self, ticket_id, method, query, body):
        if ticket_id not in self.tickets:
            raise not_found(f"Ticket {ticket_id} not found")
        if method == "GET":
            records = {k: v for k, v in self.data["notes"].records.items() if v["ticketId"] == ticket_id}
            return self._list("notes", method, query, records)
        if method != "POST":
            raise ApiError(405, {"code": "ConnectWiseApi", "message": "Method not allowed."})
        if not isinstance(body, dict):
            raise invalid("serviceNote", ("InvalidObject", "The request body must be a note.", ""))
        return 201, copy.deepcopy(self._add_note(ticket_id, body))

    def _add_note(self, ticket_id: int, body: dict) -> dict:
        flags = ("detailDescriptionFlag", "internalAnalysisFlag", "resolutionFlag")
        if not any(body.get(flag) for flag in flags):
            raise invalid(
                "serviceNote",
                (
                    "InvalidObject",
                    "Please choose where to display the notes in order to save this record.",
                    "detailDescriptionFlag",
                ),
            )
        note = {
            "id": next(self._ids),
            "ticketId": ticket_id,
            "text": body.get("text", ""),
            "detailDescriptionFlag": bool(body.get("detailDescriptionFlag")),
            "internalAnalysisFlag": bool(body.get("internalAnalysisFlag")),
            "resolutionFlag": bool(body.get("resolutionFlag")),
            "dateCreated": now_iso(),
        }
        self.data["notes"].records[note["id"]] = note
        return note

    # --- agreements -----------------------------------------------------------------------------

    def _additions(self, agreement_id, method, query, body):
        agreement = self.agreements.get(agreement_id)
        if agreement is None:
            raise not_found(f"Agreement {agreement_id} not found")
        if method == "GET":
            records = {k: v for k, v in self.additions.items() if v["agreementId"] == agreement_id}
            return self._list("additions", method, query, records)
        if method != "POST":
            raise ApiError(405, {"code": "ConnectWiseApi", "message": "Method not allowed."})
        if not isinstance(body, dict):
            raise invalid("addition", ("InvalidObject", "The request body must be an addition.", ""))
        if not body.get("product"):
            raise invalid("addition", ("MissingRequiredField", "The product field is required.", "product"))
        if body.get("billCustomer") not in ("Billable", "DoNotBill", "NoCharge"):
            raise invalid("addition", ("MissingRequiredField", "The billCustomer field is required.", "billCustomer"))
        product = self._reference("catalog", body["product"], "product", "Product", required=True)
        if product["inactiveFlag"]:
            # ConnectWise's wording for an inactive catalog item is UNCONFIRMED.
            raise invalid("addition", ("InvalidField", f"Product {product['identifier']} is inactive.", "product"))
        quantity = _number(body.get("quantity", 1), "quantity")
        price = body.get("unitPrice", product.get("price", 0))
        cost = body.get("unitCost", product.get("cost", 0))
        addition = {
            "id": next(self._ids),
            "product": {"id": product["id"], "identifier": product["identifier"]},
            "quantity": quantity,
            "lessIncluded": 0,
            "unitPrice": price,
            "unitCost": cost,
            "billCustomer": body["billCustomer"],
            "effectiveDate": body.get("effectiveDate"),
            "cancelledDate": body.get("cancelledDate"),
            "taxableFlag": product.get("taxableFlag", False),
            "invoiceDescription": body.get("invoiceDescription") or product["description"],
            "description": product["description"],
            "agreementId": agreement_id,
            "agreementStatus": agreement["agreementStatus"],
            "uom": "Each",
        }
        addition["extPrice"] = round(quantity * float(price), 2)
        addition["extCost"] = round(quantity * float(cost), 2)
        self.additions[addition["id"]] = addition
        return 201, copy.deepcopy(addition)

    def _addition(self, agreement_id, addition_id, method, query, body):
        if agreement_id not in self.agreements:
            raise not_found(f"Agreement {agreement_id} not found")
        addition = self.additions.get(addition_id)
        if addition is None or addition["agreementId"] != agreement_id:
            raise not_found(f"Addition {addition_id} not found")
        if method == "GET":
            return self._one("additions", addition_id, "Addition", method, query)
        if method == "DELETE":
            del self.additions[addition_id]
            return 204, None
        if method != "PATCH":
            raise ApiError(405, {"code": "ConnectWiseApi", "message": "Method not allowed."})
        if not isinstance(body, list):
            raise invalid("addition", ("InvalidObject", "A PATCH body must be an array of operations.", ""))
        for operation in body:
            path = str(operation.get("path", "")).lstrip("/")
            if "/" in path:
                continue
            value = operation.get("value")
            if path == "quantity":
                addition["quantity"] = _number(value, "quantity")
            elif path in ("unitPrice", "unitCost"):
                addition[path] = _number(value, path)
            elif path in ("invoiceDescription", "cancelledDate", "billCustomer", "effectiveDate"):
                addition[path] = value
            else:
                raise invalid("addition", ("InvalidField", f"{path} cannot be patched", path))
        addition["extPrice"] = round(addition["quantity"] * float(addition["unitPrice"] or 0), 2)
        addition["extCost"] = round(addition["quantity"] * float(addition["unitCost"] or 0), 2)
        return 200, copy.deepcopy(addition)

    # --- callbacks ------------------------------------------------------------------------------

    def _callbacks(self, method, query, body):
        if method == "GET":
            return self._list("callbacks", method, query)
        if method != "POST":
            raise ApiError(405, {"code": "ConnectWiseApi", "message": "Method not allowed."})
        entry = self._valid_callback(body)
        for existing in self.callbacks.values():
            same = ("url", "type", "level", "objectId")
            if all(str(existing[k]).lower() == str(entry[k]).lower() for k in same):
                raise invalid("callbackEntry", ("ObjectExists", "A matching callback entry already exists", "objectId"))
        entry.update(id=next(self._ids), memberId=1, payloadVersion="3.0.0", isSoapCallbackFlag=False)
        self.callbacks[entry["id"]] = entry
        return 201, copy.deepcopy(entry)

    def _callback(self, callback_id, method, query, body):
        entry = self.callbacks.get(callback_id)
        if entry is None:
            raise not_found(f"Callback {callback_id} not found")
        if method == "GET":
            return self._one("callbacks", callback_id, "Callback", method, query)
        if method == "DELETE":
            del self.callbacks[callback_id]
            return 204, None
        if method == "PUT":
            updated = self._valid_callback(body)
            entry.update(updated)
            return 200, copy.deepcopy(entry)
        raise ApiError(405, {"code": "ConnectWiseApi", "message": "Method not allowed."})

    def _valid_callback(self, body) -> dict:
        if not isinstance(body, dict):
            raise invalid("callbackEntry", ("InvalidObject", "The request body must be a callback entry.", ""))
        url = str(body.get("url") or "")
        if not re.match(r"^https?://[^\s/]+", url):
            raise invalid("callbackEntry", ("InvalidField", "Invalid URL", "url"))
        kind = str(body.get("type") or "").lower()
        level = str(body.get("level") or "").lower()
        if kind not in CALLBACK_LEVELS or level not in CALLBACK_LEVELS[kind]:
            raise invalid(
                "callbackEntry",
                ("InvalidObject", "Unrecognized level for type, see documentation for valid types and levels", "level"),
            )
        if body.get("objectId") is None:
            raise invalid("callbackEntry", ("MissingRequiredField", "The objectId field is required.", "objectId"))
        description = body.get("description")
        if description and len(description) > 100:
            raise invalid(
                "callbackEntry",
                (
                    "MaxLengthField",
                    "The field description must be a string with a maximum length of 100.",
                    "description",
                ),
            )
        return {
            "description": description,
            "url": url,
            "objectId": int(body["objectId"]),
            "type": body["type"],
            "level": body["level"],
            "inactiveFlag": bool(body.get("inactiveFlag", False)),
            "isSelfSuppressedFlag": bool(body.get("isSelfSuppressedFlag", False)),
        }

    # --- references -----------------------------------------------------------------------------

    def _reference(self, name: str, value, fieldname: str, label: str, *, required: bool = False) -> dict | None:
        if not value:
            if required:
                raise invalid(
                    _resource_of(fieldname), ("MissingRequiredField", f"The {fieldname} field is required.", fieldname)
                )
            return None
        records = self.data[name].records
        record = None
        if isinstance(value, dict) and value.get("id") is not None:
            record = records.get(_int(value["id"]))
        elif isinstance(value, dict) and value.get("identifier"):
            record = next(
                (
                    r
                    for r in records.values()
                    if str(r.get("identifier", "")).lower() == str(value["identifier"]).lower()
                ),
                None,
            )
        elif isinstance(value, dict) and value.get("name"):
            record = next(
                (r for r in records.values() if str(r.get("name", "")).lower() == str(value["name"]).lower()), None
            )
        if record is None:
            shown = value.get("id", value.get("identifier", value.get("name"))) if isinstance(value, dict) else value
            raise invalid(_resource_of(fieldname), ("NotFound", f"{label} {shown} not found", f"{fieldname}/id"))
        return record

    def _board_value(self, name: str, board: dict, value, label: str, fieldname: str) -> dict | None:
        if not value:
            return None
        wanted = _int(value.get("id")) if isinstance(value, dict) else None
        record = self.data[name].records.get(wanted)
        if record is None or _board_id(record) != board["id"]:
            raise invalid(
                "ticket", ("NotFound", f"{label} {wanted} not found for Service Board {board['id']}", f"{fieldname}/id")
            )
        return record

    def _children(self, name: str, board_id: int) -> list[dict]:
        return [r for r in self.data[name].records.values() if _board_id(r) == board_id]

    # --- seed data --------------------------------------------------------------------------------

    def seed(self, bulk_companies: int = 1200) -> None:
        """A realistic small MSP: named customers, a board without a default team, agreements
        with additions (one company with the product on two agreements), an inactive catalog item."""
        d: dict[str, Collection] = {}

        def collection(name, rows, known):
            d[name] = Collection({r["id"]: r for r in rows}, set(known))

        companies = [
            (250, "AcmeDental", "Acme Dental"),
            (251, "Globex", "Globex Corporation"),
            (252, "Initech", "Initech"),
            (253, "UmbrellaHealth", "Umbrella Health"),
            (254, "TwoAgreements", "Two Agreements Ltd"),
            (255, "CancelledCo", "Cancelled Agreement Co"),
            (256, "Hooli", "Hooli (deleted)"),
            (257, "StarkInd", "Stark Industries"),
        ]
        rows = [
            {
                "id": cid,
                "identifier": ident,
                "name": name,
                "status": {"id": 1, "name": "Active"},
                "deletedFlag": cid == 256,
                "types": [{"id": 1, "name": "Client"}],
                "phoneNumber": "555-0100",
                "website": f"www.{ident.lower()}.example",
                "_info": {"lastUpdated": "2025-01-01T00:00:00Z"},
            }
            for cid, ident, name in companies
        ]
        rows += [
            {
                "id": 1000 + n,
                "identifier": f"Client{n:04d}",
                "name": f"Client {n:04d} Pty",
                "status": {"id": 1, "name": "Active"},
                "deletedFlag": False,
                "types": [{"id": 1, "name": "Client"}],
            }
            for n in range(1, bulk_companies + 1)
        ]
        company_known = {"id", "identifier", "name", "status", "deletedFlag", "types", "phoneNumber", "website", "_info",
                         "lastUpdated", "territory", "defaultContact"}  # fmt: skip
        collection("companies", rows, company_known)
        by_id = {r["id"]: r for r in rows}

        def email(value):
            return [
                {"type": {"id": 1, "name": "Email"}, "value": value, "defaultFlag": True, "communicationType": "Email"}
            ]

        collection(
            "contacts",
            [
                {"id": 31, "firstName": "Jane", "lastName": "Doe", "company": _company_ref(by_id[250]), "inactiveFlag": False,
                 "communicationItems": email("jane@acmedental.example")},
                {"id": 32, "firstName": "Bob", "lastName": "Roe", "company": _company_ref(by_id[250]), "inactiveFlag": False,
                 "communicationItems": []},
                {"id": 33, "firstName": "Old", "lastName": "Contact", "company": _company_ref(by_id[250]), "inactiveFlag": True,
                 "communicationItems": []},
                {"id": 34, "firstName": "Hank", "lastName": "Scorpio", "company": _company_ref(by_id[251]), "inactiveFlag": False,
                 "communicationItems": email("hank@globex.example")},
            ],  # fmt: skip
            {"id", "firstName", "lastName", "company", "inactiveFlag", "communicationItems", "title", "types"},
        )

        boards = [
            {"id": 1, "name": "Service Desk", "inactiveFlag": False, "projectFlag": False},
            {"id": 2, "name": "Security Alerts", "inactiveFlag": False, "projectFlag": False},
            {"id": 3, "name": "No Default Team", "inactiveFlag": False, "projectFlag": False},
            {"id": 4, "name": "Projects", "inactiveFlag": False, "projectFlag": True},
            {"id": 5, "name": "Old Board", "inactiveFlag": True, "projectFlag": False},
        ]
        for board in boards:
            board.update(location={"id": 1, "name": "Main"}, department={"id": 1, "name": "Services"})
        collection("boards", boards, {"id", "name", "inactiveFlag", "projectFlag", "location", "department"})

        def ref(board_id):
            return {"id": board_id, "name": next(b["name"] for b in boards if b["id"] == board_id)}

        status_rows = []
        for board_id, names in (
            (1, [("New", False, True), ("In Progress", False, False), ("Waiting on Customer", False, False),
                 ("Scheduled", False, False), ("Completed", True, False), ("Cancelled", True, False),
                 ("Closed - No Action", True, False)]),
            (2, [("New", False, True), ("Investigating", False, False), ("Resolved", True, False),
                 ("Closed - No Action", True, False)]),
            (3, [("New", False, True), ("Done", True, False)]),
            (5, [("New", False, True)]),
        ):  # fmt: skip
            for order, (name, closed, default) in enumerate(names):
                status_rows.append(
                    {"id": 100 + 10 * (board_id - 1) + order + 1, "name": name, "board": ref(board_id), "sortOrder": order,
                     "displayOnBoard": True, "inactive": False, "closedStatus": closed, "defaultFlag": default,
                     "escalationStatus": "NotResponded", "customerPortalFlag": False}  # fmt: skip
                )
        collection("statuses", status_rows, set(status_rows[0]))

        types = [
            {
                "id": 201,
                "name": "Incident",
                "category": "Reactive",
                "defaultFlag": True,
                "inactiveFlag": False,
                "board": ref(1),
            },
            {
                "id": 202,
                "name": "Request",
                "category": "Reactive",
                "defaultFlag": False,
                "inactiveFlag": False,
                "board": ref(1),
            },
            {
                "id": 203,
                "name": "Retired",
                "category": "Reactive",
                "defaultFlag": False,
                "inactiveFlag": True,
                "board": ref(1),
            },
            {
                "id": 211,
                "name": "Threat",
                "category": "Reactive",
                "defaultFlag": True,
                "inactiveFlag": False,
                "board": ref(2),
            },
            {
                "id": 221,
                "name": "Incident",
                "category": "Reactive",
                "defaultFlag": True,
                "inactiveFlag": False,
                "board": ref(3),
            },
        ]
        collection("types", types, set(types[0]))
        subtypes = [
            {"id": 301, "name": "Security", "inactiveFlag": False, "typeAssociationIds": [201], "board": ref(1)},
            {"id": 302, "name": "Access", "inactiveFlag": False, "typeAssociationIds": [201, 202], "board": ref(1)},
            {"id": 311, "name": "Phishing", "inactiveFlag": False, "typeAssociationIds": [211], "board": ref(2)},
        ]
        collection("subtypes", subtypes, set(subtypes[0]))
        items = [
            {"id": 401, "name": "Alert", "inactiveFlag": False, "board": ref(1)},
            {"id": 402, "name": "Follow-up", "inactiveFlag": False, "board": ref(1)},
            {"id": 411, "name": "Mailbox", "inactiveFlag": False, "board": ref(2)},
        ]
        collection("items", items, set(items[0]))
        teams = [
            {"id": 501, "name": "Tier 1", "defaultFlag": True, "boardId": 1},
            {"id": 502, "name": "Security Ops", "defaultFlag": False, "boardId": 1},
            {"id": 511, "name": "SOC", "defaultFlag": True, "boardId": 2},
            {"id": 521, "name": "Unassigned", "defaultFlag": False, "boardId": 3},
        ]
        for team in teams:
            team.update(locationId=1, businessUnitId=1, teamLeader={"id": 1, "identifier": "admin"}, members=[])
        collection("teams", teams, set(teams[0]))

        priorities = [
            {"id": 1, "name": "Priority 1 - Emergency Response", "color": "red", "sortOrder": 1, "defaultFlag": False, "level": "Highest"},
            {"id": 2, "name": "Priority 2 - Quick Response", "color": "orange", "sortOrder": 2, "defaultFlag": False, "level": "High"},
            {"id": 3, "name": "Priority 3 - Normal Response", "color": "yellow", "sortOrder": 3, "defaultFlag": True, "level": "Medium"},
            {"id": 4, "name": "Priority 4 - Schedule Maintenance", "color": "green", "sortOrder": 4, "defaultFlag": False, "level": "Low"},
            {"id": 5, "name": "Do Not Respond", "color": "grey", "sortOrder": 5, "defaultFlag": False, "level": "Lowest"},
        ]  # fmt: skip
        collection("priorities", priorities, set(priorities[0]) | {"imageLink", "urgencySortOrder"})
        sources = [
            {"id": 1, "name": "Email", "defaultFlag": True},
            {"id": 2, "name": "Phone", "defaultFlag": False},
            {"id": 3, "name": "Portal", "defaultFlag": False},
            {"id": 4, "name": "Integration", "defaultFlag": False},
        ]
        collection("sources", sources, {"id", "name", "defaultFlag", "enteredBy", "dateEntered"})

        catalog = [
            {"id": 701, "identifier": "MDR-SEAT", "description": "M365 AI Powered MDR (per user)", "inactiveFlag": False, "price": 12.5, "cost": 6.0},
            {"id": 702, "identifier": "BACKUP-GB", "description": "Managed Backup (per GB)", "inactiveFlag": False, "price": 0.1, "cost": 0.04},
            {"id": 703, "identifier": "LEGACY-AV", "description": "Legacy Antivirus (per device)", "inactiveFlag": True, "price": 3.0, "cost": 1.0},
            {"id": 704, "identifier": "MDR-SEAT-CANCELLED", "description": "M365 AI Powered MDR – Cancelled", "inactiveFlag": False, "price": 0, "cost": 0},
        ]  # fmt: skip
        for item in catalog:
            item.update(subcategory={"id": 1, "name": "Security"}, type={"id": 1, "name": "Service"}, productClass="Service",
                        unitOfMeasure={"id": 1, "name": "Each"}, taxableFlag=False, customerDescription=item["description"],
                        recurringFlag=True)  # fmt: skip
        collection("catalog", catalog, set(catalog[0]) | {"recurringRevenue", "recurringCost", "connectWiseID"})

        def agreement(aid, company_id, name, status="Active", cancelled=None):
            return {
                "id": aid, "name": name, "type": {"id": 1, "name": "Managed Services"},
                "company": _company_ref(by_id[company_id]), "contact": None, "startDate": "2024-01-01T00:00:00Z",
                "endDate": None, "noEndingDateFlag": True, "cancelledFlag": status == "Cancelled",
                "dateCancelled": cancelled, "agreementStatus": status, "billTime": "Billable",
                "billExpenses": "Billable", "billProducts": "Billable", "applicationUnits": "Amount",
            }  # fmt: skip

        agreements = [
            agreement(3001, 250, "Managed Security"),
            agreement(3002, 250, "Backup Services"),
            agreement(3003, 251, "Managed Services"),
            agreement(3004, 254, "MSA Primary"),
            agreement(3005, 254, "MSA Legacy"),
            agreement(3006, 255, "Old Contract", "Cancelled", "2025-01-31T00:00:00Z"),
            agreement(3007, 255, "New Contract"),
            agreement(3008, 252, "Managed Security"),
            agreement(3009, 253, "Security Bundle"),
        ]
        agreement_known = set(agreements[0]) | {"parentAgreement", "billingCycle", "billAmount", "periodType",
                                                "reasonCancelled", "customFields"}  # fmt: skip
        collection("agreements", agreements, agreement_known)

        def addition(xid, aid, product_id, quantity, cancelled=None):
            product = next(c for c in catalog if c["id"] == product_id)
            return {
                "id": xid, "product": {"id": product_id, "identifier": product["identifier"]}, "quantity": quantity,
                "lessIncluded": 0, "unitPrice": product["price"], "unitCost": product["cost"], "billCustomer": "Billable",
                "effectiveDate": "2024-01-01T00:00:00Z", "cancelledDate": cancelled, "taxableFlag": False,
                "invoiceDescription": product["description"], "description": product["description"], "agreementId": aid,
                "agreementStatus": "Active", "uom": "Each",
                "extPrice": round(quantity * product["price"], 2), "extCost": round(quantity * product["cost"], 2),
            }  # fmt: skip

        additions = [
            addition(9001, 3001, 701, 15),
            addition(9002, 3002, 702, 120),
            addition(9003, 3004, 701, 10),
            addition(9004, 3005, 701, 3),
            addition(9005, 3006, 701, 8),
            addition(9006, 3008, 701, 4, cancelled="2025-02-01T00:00:00Z"),
            addition(9007, 3009, 701, 5),
            addition(9008, 3009, 701, 6),
        ]
        addition_known = set(additions[0]) | {"serialNumber", "purchaseItemFlag", "specialOrderFlag", "billedQuantity",
                                              "sequenceNumber", "margin", "opportunity", "customFields"}  # fmt: skip
        collection("additions", additions, addition_known)

        ticket_known = {"id", "summary", "recordType", "board", "company", "status", "priority", "type", "subType", "item",
                        "team", "source", "contact", "closedFlag", "closedDate", "closedBy", "externalXRef", "poNumber",
                        "severity", "impact", "_info", "lastUpdated"}  # fmt: skip
        collection("tickets", [], ticket_known)
        collection("notes", [], {"id", "ticketId", "text", "detailDescriptionFlag", "internalAnalysisFlag",
                                 "resolutionFlag", "dateCreated"})  # fmt: skip
        collection("callbacks", [], {"id", "description", "url", "objectId", "type", "level", "inactiveFlag",
                                     "isSelfSuppressedFlag", "payloadVersion", "memberId"})  # fmt: skip
        self.data = d


class _Html:
    pass


_HTML = _Html()


class _Page:
    def __init__(self, items: list[dict], number: int, size: int, total: int):
        self.items, self.number, self.size, self.total = items, number, size, total

    def link(self, url: str, pairs: list[tuple[str, str]]) -> str:
        """RFC 5988 Link with first/prev/next/last, other parameters kept, page last."""
        kept = [(k, v) for k, v in pairs if k.lower() not in ("page", "pagesize")]
        last = max(1, -(-self.total // self.size))

        def href(page: int) -> str:
            return f"{url}?{urlencode(kept + [('pageSize', self.size), ('page', page)])}"

        links = [f'<{href(1)}>; rel="first"']
        if self.number > 1:
            links.append(f'<{href(self.number - 1)}>; rel="prev"')
        if self.number < last:
            links.append(f'<{href(self.number + 1)}>; rel="next"')
        links.append(f'<{href(last)}>; rel="last"')
        return ", ".join(links)


def _company_ref(company: dict) -> dict:
    return {"id": company["id"], "identifier": company["identifier"], "name": company["name"]}


def _board_id(record: dict) -> int | None:
    if "boardId" in record:
        return record["boardId"]
    return (record.get("board") or {}).get("id")


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _number(value, fieldname: str) -> float | int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        # The wording for a non-numeric quantity is UNCONFIRMED.
        raise invalid("addition", ("InvalidField", f"The field {fieldname} must be a number.", fieldname)) from None
    return int(number) if number.is_integer() else number


def _sort_key(value):
    if isinstance(value, dict):
        value = value.get("name", value.get("id"))
    return (0, value) if isinstance(value, (int, float)) else (1, str(value).lower())


def _resource_of(fieldname: str) -> str:
    return "addition" if fieldname == "product" else "ticket"


class _Handler(BaseHTTPRequestHandler):
    fake: FakeConnectWise
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, each answer waits for a delayed ACK.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, headers, body = self.fake.handle(
            self.command, self.path, dict(self.headers.items()), raw, self.headers.get("Host", self.fake.site)
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format, *args) -> None:
        pass  # the request log on the fake is the record; stderr noise helps nobody


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake ConnectWise Manage API.")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args()
    fake = FakeConnectWise(host=args.host, port=args.port, latency_ms=args.latency_ms)
    fake.start()
    print(f"Fake ConnectWise at {fake.base_url}")
    print(f"  Company ID: {fake.company_id}\n  Site URL:   http://{fake.site}  (needs PSA_ALLOW_PRIVATE_HOSTS=true)")
    print(
        f"  Public Key: {fake.public_key}\n  Private Key: {fake.private_key}\n  CONNECTWISE_CLIENT_ID={fake.client_id}"
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
