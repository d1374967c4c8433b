"""A fake Autotask PSA over real HTTP, written from ../shared/psa/autotask.md.

It serves zone discovery and the REST API on one loopback port:

    fake = AutotaskFake().start()          # or: with AutotaskFake() as fake:
    fake.discovery_url                     # config["zone_discovery_url"]
    fake.zone_url                          # what zone discovery returns as `url`
    fake.tables["Tickets"]                 # state, by entity: {id: record}
    fake.requests                          # every request, with headers and parsed body
    fake.stop()

What it does the way Autotask does (and the fact sheet says so): the three auth headers on every
call (401 for a wrong Secret, 500 "IntegrationCode is invalid" for a wrong tracking identifier),
business and permission errors as HTTP 500 {"errors": [...]}, the query language with
nextPageUrl paging (a POST query continues with POST and the same body, GET on it is 405),
{"item": ...} single reads, {"itemId": n} writes, picklists from entityInformation/fields,
children created through the parent's URL, units that change only through adjustments.

Knobs: `latency_ms`, `revoke()` (the Secret stops working), `deny(entity, action)` (the
"adequate permissions" 500), `inject(status, times)` (429/500 storms), `thread_limit` per entity
(3, with `max_concurrency` recording what was seen) and `hourly_limit` (10,000). What Autotask
answers when a limit is hit is unconfirmed; the fake answers 429 with an errors array.

Run it alone: python -m tests.fakes.autotask_server --port 8765
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import itertools
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "autotask"
USERNAME = "hubapi@acme-msp.example"
SECRET = "Fake$ecret-Do-Not-Leak-7Qx"
INTEGRATION_CODE = "FAKETRACKINGIDENTIFIER27CHR"
ZONE_NAME = "Fake Zone 14"

PERMISSION = "The logged in Resource does not have the adequate permissions to {action} this entity type."
ENTITIES = {
    name.lower(): name
    for name in (
        "Companies", "Contacts", "Tickets", "TicketNotes", "Contracts", "ContractServices",
        "ContractServiceUnits", "ContractServiceAdjustments", "Services", "Resources",
    )
}  # fmt: skip
FIELDS = {
    "Companies": ["id", "companyName", "companyNumber", "companyType", "isActive", "phone", "ownerResourceID",
                  "parentCompanyID", "lastTrackedModifiedDateTime"],
    "Contacts": ["id", "companyID", "firstName", "lastName", "emailAddress", "isActive", "primaryContact"],
    "Tickets": ["id", "ticketNumber", "companyID", "contactID", "title", "description", "status", "priority",
                "queueID", "ticketType", "source", "issueType", "subIssueType", "ticketCategory", "externalID",
                "createDate", "lastActivityDate", "completedDate", "dueDateTime", "assignedResourceID",
                "assignedResourceRoleID", "contractID", "billingCodeID"],
    "TicketNotes": ["id", "ticketID", "title", "description", "noteType", "publish", "createDateTime",
                    "creatorResourceID", "lastActivityDate"],
    "Contracts": ["id", "contractName", "contractNumber", "companyID", "contractType", "contractCategory", "status",
                  "startDate", "endDate", "isDefaultContract", "description"],
    "ContractServices": ["id", "contractID", "serviceID", "unitPrice", "unitCost", "adjustedPrice",
                         "invoiceDescription", "internalDescription", "quoteItemID"],
    "ContractServiceUnits": ["id", "contractID", "contractServiceID", "serviceID", "startDate", "endDate", "units",
                             "price", "cost", "approveAndPostDate"],
    "ContractServiceAdjustments": ["id", "contractID", "serviceID", "contractServiceID", "effectiveDate",
                                   "unitChange", "adjustedUnitPrice", "adjustedUnitCost", "allowRepeatService",
                                   "quoteItemID"],
    "Services": ["id", "name", "description", "invoiceDescription", "unitPrice", "unitCost", "periodType",
                 "isActive", "billingCodeID", "vendorCompanyID"],
    "Resources": ["id", "firstName", "lastName", "userName", "isActive"],
}  # fmt: skip
TICKET_PICKLISTS = ("status", "priority", "queueID", "ticketType", "source", "issueType", "subIssueType",
                    "ticketCategory")  # fmt: skip
NOTE_PICKLISTS = ("noteType", "publish")


class FakeError(Exception):
    def __init__(self, status: int, body=None, headers: dict | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def business_error(*messages: str) -> FakeError:
    return FakeError(500, {"errors": list(messages)})


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict
    headers: dict
    body: object
    entity: str = ""
    status: int | None = None
    started: float = 0.0
    ended: float = 0.0


@dataclass
class Injection:
    status: int
    body: object = None
    headers: dict = field(default_factory=dict)
    entity: str | None = None


def _iso(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _parse_dt(value):
    if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}", value):
        text = value.rstrip("Z").split(".")[0]
        try:
            return datetime.fromisoformat(text if "T" in text else text + "T00:00:00")
        except ValueError:
            return None
    return None


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def _month_bounds(day: date) -> tuple[date, date]:
    start = day.replace(day=1)
    nxt = (start + timedelta(days=32)).replace(day=1)
    return start, nxt - timedelta(days=1)


class AutotaskFake:
    def __init__(
        self,
        *,
        username: str = USERNAME,
        secret: str = SECRET,
        integration_code: str = INTEGRATION_CODE,
        port: int = 0,
        host: str = "127.0.0.1",
        today: date | None = None,
        companies: int = 650,
        latency_ms: int = 0,
        thread_limit: int = 3,
        hourly_limit: int = 10_000,
    ):
        self.username = username
        self.secret = secret
        self.integration_code = integration_code
        self.host, self.port = host, port
        self.today = today or date.today()
        self.latency_ms = latency_ms
        self.thread_limit = thread_limit
        self.hourly_limit = hourly_limit
        self.lock = threading.RLock()
        self.requests: list[LoggedRequest] = []
        self.in_flight: collections.Counter = collections.Counter()
        self.max_concurrency: collections.Counter = collections.Counter()
        self.refused_for_threads = 0
        self._hour: collections.deque = collections.deque()
        self._injections: list[Injection] = []
        self.denied: set[tuple[str, str]] = set()
        self.revoked = False
        self.server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.tickets_fields = json.loads((FIXTURES / "tickets_fields.json").read_text())
        self.notes_fields = json.loads((FIXTURES / "ticket_notes_fields.json").read_text())
        self.tables: dict[str, dict[int, dict]] = {name: {} for name in FIELDS}
        self._ids = itertools.count(50_000)
        self._ticket_seq = itertools.count(1)
        self.seed(companies)

    # --- data ------------------------------------------------------------------------------------

    def _put(self, entity: str, record: dict) -> dict:
        full = {name: None for name in FIELDS[entity]}
        full.update(record)
        if full.get("id") is None:
            full["id"] = next(self._ids)
        self.tables[entity][full["id"]] = full
        return full

    def seed(self, companies: int) -> None:
        t = self.today
        self._put("Companies", {"id": 0, "companyName": "Acme MSP (own company)", "companyNumber": "0",
                                "companyType": 5, "isActive": True})
        named = ["Acme Corp", "Globex Corporation", "Initech", "Umbrella Corporation", "Stark Industries",
                 "Wayne Enterprises", "Hooli", "Vandelay Industries"]  # fmt: skip
        for number in range(1, companies):
            name = named[number - 1] if number <= len(named) else f"Customer {number:04d}"
            self._put("Companies", {
                "id": number, "companyName": name, "companyNumber": f"C{number:05d}",
                "companyType": 3 if number % 40 == 0 else 1, "isActive": number % 50 != 0, "phone": "555-0100",
                "ownerResourceID": 29682885,
            })  # fmt: skip
        for company_id, (first, last, active) in enumerate(
            [("Ann", "Admin", 1), ("Gus", "Globex", 1), ("Ira", "Initech", 1), ("Old", "Contact", 0)], start=1
        ):
            self._put("Contacts", {"id": 300 + company_id, "companyID": company_id if company_id < 4 else 1,
                                   "firstName": first, "lastName": last,
                                   "emailAddress": f"{first.lower()}@example.com", "isActive": active,
                                   "primaryContact": company_id == 1})  # fmt: skip
        self._put("Resources", {"id": 29682885, "firstName": "Hub", "lastName": "API", "userName": self.username,
                                "isActive": True})  # fmt: skip
        for sid, name, price, active in [(1, "Managed Security — per user", 4.5, True),
                                         (2, "Email Protection — per mailbox", 2.0, True),
                                         (3, "Backup — per device", 7.0, True),
                                         (4, "Legacy AV (retired)", 1.0, False)]:  # fmt: skip
            self._put("Services", {"id": sid, "name": name, "unitPrice": price, "unitCost": price / 2,
                                   "periodType": 1, "isActive": active, "invoiceDescription": name})  # fmt: skip
        self.add_contract(100, "Acme Managed Services", company_id=1, start=t - timedelta(days=200),
                          end=t + timedelta(days=165), services={1: 10})  # fmt: skip
        self.add_contract(101, "Globex Go-Live Contract", company_id=2, start=t + timedelta(days=30),
                          end=t + timedelta(days=395), services={1: 0})  # fmt: skip
        self.add_contract(102, "Initech 2023 Contract", company_id=3, start=t - timedelta(days=400),
                          end=t - timedelta(days=35), services={1: 12})  # fmt: skip
        self.add_contract(103, "Umbrella Managed Services", company_id=4, start=t - timedelta(days=100),
                          end=t + timedelta(days=265), services={1: 5})  # fmt: skip
        self.add_contract_service(103, 1, units=3)  # the distributor-sync duplicate
        self.add_contract(104, "Acme Block Hours", company_id=1, start=t - timedelta(days=30),
                          end=t + timedelta(days=335), contract_type=6)  # fmt: skip
        self.add_contract(105, "Acme Email Security", company_id=1, start=t - timedelta(days=10),
                          end=t + timedelta(days=355), services={})  # fmt: skip

    def add_contract(self, contract_id, name, *, company_id, start, end, services=None, contract_type=7, status=1):
        self._put("Contracts", {"id": contract_id, "contractName": name, "contractNumber": f"K{contract_id}",
                                "companyID": company_id, "contractType": contract_type, "contractCategory": 1,
                                "status": status, "startDate": _iso(start), "endDate": _iso(end),
                                "isDefaultContract": False})  # fmt: skip
        for service_id, units in (services or {}).items():
            self.add_contract_service(contract_id, service_id, units=units)
        return self.tables["Contracts"][contract_id]

    def add_contract_service(self, contract_id: int, service_id: int, *, units: int = 0) -> dict:
        contract = self.tables["Contracts"][contract_id]
        service = self.tables["Services"][service_id]
        line = self._put("ContractServices", {"contractID": contract_id, "serviceID": service_id,
                                              "unitPrice": service["unitPrice"], "unitCost": service["unitCost"],
                                              "invoiceDescription": service["name"]})  # fmt: skip
        # One row per monthly period from the contract's start to its end.
        day, end = _parse_dt(contract["startDate"]).date(), _parse_dt(contract["endDate"]).date()
        while day <= end:
            first, last = _month_bounds(day)
            self._put("ContractServiceUnits", {
                "contractID": contract_id, "contractServiceID": line["id"], "serviceID": service_id,
                "startDate": _iso(max(first, day)), "endDate": _iso(min(last, end)), "units": units,
                "price": service["unitPrice"], "cost": service["unitCost"],
            })  # fmt: skip
            day = last + timedelta(days=1)
        return line

    def units_today(self, contract_service_id: int, on: date | None = None) -> int:
        on = on or self.today
        rows = [r for r in self.tables["ContractServiceUnits"].values() if r["contractServiceID"] == contract_service_id
                and _parse_dt(r["startDate"]).date() <= on <= _parse_dt(r["endDate"]).date()]  # fmt: skip
        return max(rows, key=lambda r: r["startDate"])["units"] if rows else 0

    # --- knobs -----------------------------------------------------------------------------------

    def revoke(self) -> None:
        self.revoked = True

    def restore(self) -> None:
        self.revoked = False

    def deny(self, entity: str, action: str = "query") -> None:
        """Make the API user's security level refuse `action` (query, create, update) on `entity`."""
        self.denied.add((entity.lower(), action))

    def allow(self, entity: str, action: str = "query") -> None:
        self.denied.discard((entity.lower(), action))

    def inject(self, status: int, times: int = 1, *, body=None, retry_after: str | None = None, entity: str | None = None):
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        if body is None and status == 429:
            body = {"errors": ["Request threshold exceeded."]}
        with self.lock:
            self._injections.extend(Injection(status, body, headers, entity and entity.lower()) for _ in range(times))

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()
            self.max_concurrency.clear()
            self.refused_for_threads = 0

    def requests_to(self, entity: str, method: str | None = None) -> list[LoggedRequest]:
        return [r for r in self.requests if r.entity.lower() == entity.lower() and (method is None or r.method == method)]

    # --- server ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None, "start() the fake first"
        return f"http://{self.host}:{self.server.server_address[1]}"

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/atservicesrest/"

    @property
    def zone_url(self) -> str:
        return f"{self.url}/ATServicesRest/"

    @property
    def web_url(self) -> str:
        return f"{self.url}/"

    def start(self) -> AutotaskFake:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="autotask-fake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> AutotaskFake:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- dispatch --------------------------------------------------------------------------------

    def handle(self, entry: LoggedRequest) -> tuple[int, object, dict]:
        parts = [p for p in entry.path.split("/") if p]
        lowered = [p.lower() for p in parts]
        if lowered[:1] != ["atservicesrest"] or len(parts) < 3 or lowered[1] != "v1.0":
            raise FakeError(404, {"Message": f"No HTTP resource was found that matches the request URI '{entry.path}'."})
        route = parts[2:]
        if route[0].lower() == "zoneinformation":
            return self.zone_information(entry)
        entry.entity = self.entity_name(route)
        self.authenticate(entry)
        with self.lock:
            now = time.monotonic()
            while self._hour and now - self._hour[0] > 3600:
                self._hour.popleft()
            if len(self._hour) >= self.hourly_limit:
                raise FakeError(429, {"errors": ["API request threshold of 10000 requests per hour exceeded."]})
            self._hour.append(now)
            injection = next((i for i in self._injections if i.entity in (None, entry.entity.lower())), None)
            if injection is not None:
                self._injections.remove(injection)
        if injection is not None:
            raise FakeError(injection.status, injection.body, injection.headers)
        bucket = entry.entity.lower()
        with self.lock:
            self.in_flight[bucket] += 1
            self.max_concurrency[bucket] = max(self.max_concurrency[bucket], self.in_flight[bucket])
            over = self.in_flight[bucket] > self.thread_limit
            if over:
                self.refused_for_threads += 1
        try:
            if over:
                raise FakeError(429, {"errors": [f"Thread limit of {self.thread_limit} concurrent requests exceeded for {entry.entity}."]})
            if self.latency_ms:
                time.sleep(self.latency_ms / 1000)
            with self.lock:
                return self.route(entry, route)
        finally:
            with self.lock:
                self.in_flight[bucket] -= 1

    def zone_information(self, entry: LoggedRequest) -> tuple[int, object, dict]:
        if entry.method != "GET":
            raise FakeError(405, {"Message": f"The requested resource does not support http method '{entry.method}'."})
        user = (entry.query.get("user") or [""])[0]
        if not user or user.lower() != self.username.lower():
            raise business_error("Zone information could not be determined")
        return 200, {"zoneName": ZONE_NAME, "url": self.zone_url, "webUrl": self.web_url, "ci": 14}, {}

    def authenticate(self, entry: LoggedRequest) -> None:
        headers = {k.lower(): v for k, v in entry.headers.items()}
        if headers.get("username", "").lower() != self.username.lower():
            if not headers.get("username"):
                raise FakeError(401, None)
            raise business_error("Unable to authenticate the user: no such API user.")
        if headers.get("apiintegrationcode") != self.integration_code:
            raise business_error("IntegrationCode is invalid.")
        if self.revoked or headers.get("secret") != self.secret:
            raise FakeError(401, None)
        reading = entry.method == "GET" or "/query" in entry.path.lower()
        if headers.get("impersonationresourceid") and reading:
            raise business_error(PERMISSION.format(action="query"))

    def entity_name(self, route: list[str]) -> str:
        first = route[0].lower()
        if len(route) >= 3 and route[1].isdigit():
            child = {("tickets", "notes"): "TicketNotes", ("contracts", "services"): "ContractServices",
                     ("contracts", "serviceunits"): "ContractServiceUnits",
                     ("contracts", "serviceadjustments"): "ContractServiceAdjustments",
                     ("companies", "contacts"): "Contacts"}.get((first, route[2].lower()))  # fmt: skip
            if child:
                return child
        return ENTITIES.get(first, route[0])

    def check_allowed(self, entity: str, action: str) -> None:
        if (entity.lower(), action) in self.denied:
            raise business_error(PERMISSION.format(action=action))

    def route(self, entry: LoggedRequest, route: list[str]) -> tuple[int, object, dict]:
        method, low = entry.method, [p.lower() for p in route]
        if low == ["thresholdinformation"]:
            self._allow_methods(method, "GET")
            return 200, {"externalRequestThreshold": self.hourly_limit, "requestThresholdTimeframe": 60,
                         "currentTimeframeRequestCount": len(self._hour)}, {}  # fmt: skip
        entity = entry.entity
        if entity not in FIELDS:
            raise FakeError(404, {"Message": f"No HTTP resource was found that matches the request URI '{entry.path}'."})
        # Children: Tickets/{id}/Notes, Contracts/{id}/ServiceAdjustments, ...
        if len(route) >= 3 and route[1].isdigit() and low[0] != entity.lower():
            parent_id = int(route[1])
            if len(route) == 3:
                if method == "POST":
                    self.check_allowed(entity, "create")
                    return 200, {"itemId": self.create_child(entity, low[0], parent_id, entry.body)}, {}
                self._allow_methods(method, "GET", "POST")
                self.check_allowed(entity, "query")
                key = {"TicketNotes": "ticketID"}.get(entity, "contractID")
                items = [r for r in self.tables[entity].values() if r.get(key) == parent_id]
                return 200, {"items": items, "pageDetails": self._details(len(items), 500, None)}, {}
            if len(route) == 4 and route[3].isdigit():
                self._allow_methods(method, "GET")
                self.check_allowed(entity, "query")
                return 200, {"item": copy.deepcopy(self.tables[entity].get(int(route[3])))}, {}
            raise FakeError(404, {"Message": "No HTTP resource was found."})
        rest = low[1:]
        if rest[:1] == ["entityinformation"]:
            self._allow_methods(method, "GET")
            if rest == ["entityinformation"]:
                return 200, {"info": {"name": entity[:-1], "canCreate": True, "canDelete": False, "canQuery":
                                      entity != "ContractServiceAdjustments", "canUpdate": entity == "Tickets",
                                      "hasUserDefinedFields": True, "supportsWebhookCallouts": False}}, {}  # fmt: skip
            if rest == ["entityinformation", "fields"]:
                self.check_allowed(entity, "query")
                return 200, self.fields_of(entity), {}
            if rest == ["entityinformation", "userdefinedfields"]:
                return 200, {"fields": []}, {}
        if rest[:1] == ["query"]:
            if entity == "ContractServiceAdjustments":
                raise FakeError(405, {"Message": f"The requested resource does not support http method '{method}'."})
            self.check_allowed(entity, "query")
            return 200, self.query(entry, entity, rest[1:]), {}
        if not rest:
            if method == "POST":
                if entity == "TicketNotes":
                    raise FakeError(404, {"Message": "No HTTP resource was found that matches the request URI."})
                self.check_allowed(entity, "create")
                return 200, {"itemId": self.create(entity, entry.body)}, {}
            if method == "PATCH":
                self.check_allowed(entity, "update")
                return 200, {"itemId": self.patch(entity, entry.body)}, {}
            raise FakeError(405, {"Message": f"The requested resource does not support http method '{method}'."})
        if len(rest) == 1 and rest[0].isdigit():
            if method == "DELETE":
                raise FakeError(405, {"Message": "The requested resource does not support http method 'DELETE'."})
            self._allow_methods(method, "GET")
            self.check_allowed(entity, "query")
            return 200, {"item": copy.deepcopy(self.tables[entity].get(int(rest[0])))}, {}
        raise FakeError(404, {"Message": "No HTTP resource was found that matches the request URI."})

    @staticmethod
    def _allow_methods(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise FakeError(405, {"Message": f"The requested resource does not support http method '{method}'."})

    def fields_of(self, entity: str) -> dict:
        if entity == "Tickets":
            return copy.deepcopy(self.tickets_fields)
        if entity == "TicketNotes":
            return copy.deepcopy(self.notes_fields)
        return {"fields": [{"name": name, "dataType": "string", "isPickList": False, "picklistValues": None,
                            "isQueryable": True, "isReadOnly": name == "id"} for name in FIELDS[entity]]}  # fmt: skip

    # --- queries ---------------------------------------------------------------------------------

    def query(self, entry: LoggedRequest, entity: str, rest: list[str]) -> dict:
        if rest == ["next"]:
            token = (entry.query.get("paging") or [""])[0]
            try:
                paging = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
            except ValueError:
                raise business_error("The paging token is invalid.") from None
            if paging["method"] != entry.method:
                raise FakeError(405, {"Message": f"The requested resource does not support http method '{entry.method}'."})
            spec = entry.body if entry.method == "POST" else paging["search"]
            return self._page(entity, spec, after=paging["after"], method=entry.method)
        if entry.method == "GET":
            raw = (entry.query.get("search") or [""])[0]
            try:
                spec = json.loads(raw) if raw else None
            except ValueError:
                raise business_error("The search parameter is not valid JSON.") from None
        elif entry.method == "POST":
            spec = entry.body
        else:
            raise FakeError(405, {"Message": f"The requested resource does not support http method '{entry.method}'."})
        if rest == ["count"]:
            return {"queryCount": len(self._matching(entity, spec))}
        if rest:
            raise FakeError(404, {"Message": "No HTTP resource was found."})
        return self._page(entity, spec, after=None, method=entry.method)

    def _spec(self, spec) -> tuple[list, int, list | None]:
        if not isinstance(spec, dict):
            raise business_error("A query must contain at least one filter.")
        lower = {k.lower(): v for k, v in spec.items()}
        filters = lower.get("filter")
        if not filters:
            raise business_error("A query must contain at least one filter.")
        max_records = lower.get("maxrecords", 500)
        if not isinstance(max_records, int) or not 1 <= max_records <= 500:
            raise business_error("MaxRecords must be between 1 and 500.")
        return filters, max_records, lower.get("includefields")

    def _matching(self, entity: str, spec) -> list[dict]:
        filters, _, _ = self._spec(spec)
        names = {n.lower(): n for n in FIELDS[entity]}
        records = sorted(self.tables[entity].values(), key=lambda r: r["id"])
        return [r for r in records if all(self._match(entity, names, r, f) for f in filters)]

    def _page(self, entity: str, spec, *, after, method: str) -> dict:
        _, max_records, include = self._spec(spec)
        records = self._matching(entity, spec)
        if after is not None:
            records = [r for r in records if r["id"] > after]
        page, more = records[:max_records], len(records) > max_records
        next_url = None
        if more:
            token = {"after": page[-1]["id"], "method": method, "search": spec if method == "GET" else None}
            encoded = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            next_url = f"{self.zone_url}V1.0/{entity}/query/next?paging={encoded}"
        items = [self._project(entity, r, include) for r in page]
        return {"items": items, "pageDetails": self._details(len(items), max_records, next_url)}

    @staticmethod
    def _details(count: int, request_count: int, next_url: str | None) -> dict:
        return {"count": count, "requestCount": request_count, "prevPageUrl": None, "nextPageUrl": next_url}

    def _project(self, entity: str, record: dict, include) -> dict:
        if not include:
            return {**copy.deepcopy(record), "userDefinedFields": []}
        names = {n.lower(): n for n in FIELDS[entity]}
        picked = {}
        for name in include:
            canonical = names.get(str(name).lower())
            if canonical is None:
                raise business_error(f"Unable to find {name} in the {entity} Entity.")
            picked[canonical] = copy.deepcopy(record[canonical])
        return {**picked, "userDefinedFields": []}

    def _match(self, entity: str, names: dict, record: dict, item: dict) -> bool:
        item = {k.lower(): v for k, v in item.items()}
        op = str(item.get("op", "")).lower()
        if op in ("and", "or"):
            results = [self._match(entity, names, record, sub) for sub in item.get("items") or []]
            return all(results) if op == "and" else any(results)
        name = names.get(str(item.get("field", "")).lower())
        if name is None:
            raise business_error(f"Unable to find {item.get('field')} in the {entity} Entity.")
        value, wanted = record.get(name), item.get("value")
        if op == "exist":
            return value is not None
        if op == "notexist":
            return value is None
        if op in ("in", "notin"):
            if not isinstance(wanted, list):
                raise business_error(f"The value of an {item.get('op')} condition must be a list.")
            hit = any(self._compare(value, w) == 0 for w in wanted)
            return hit if op == "in" else not hit
        if isinstance(value, bool) and not isinstance(wanted, bool) and name.lower().startswith("is"):
            raise business_error(f"Invalid boolean value for field {item.get('field')}.")
        if value is None:
            return op == "noteq"
        if op in ("beginswith", "endswith", "contains"):
            text, part = str(value).lower(), str(wanted).lower()
            return {"beginswith": text.startswith, "endswith": text.endswith, "contains": lambda p: p in text}[op](part)
        ops = {"eq": lambda c: c == 0, "noteq": lambda c: c != 0, "gt": lambda c: c > 0, "gte": lambda c: c >= 0,
               "lt": lambda c: c < 0, "lte": lambda c: c <= 0}  # fmt: skip
        if op not in ops:
            raise business_error(f"Invalid query syntax: unknown operator {item.get('op')}.")
        return ops[op](self._compare(value, wanted))

    @staticmethod
    def _compare(value, wanted) -> int:
        left, right = _parse_dt(value), _parse_dt(wanted)
        if left is None or right is None:
            left, right = value, wanted
            if isinstance(left, str) or isinstance(right, str):
                # SQL Server's collation: strings compare without case.
                left, right = str(left).lower(), str(right).lower()
        try:
            return (left > right) - (left < right)
        except TypeError:
            return 1

    # --- writes ----------------------------------------------------------------------------------

    def _canonical(self, entity: str, body) -> dict:
        if not isinstance(body, dict):
            raise business_error("The request body is not a valid entity.")
        names = {n.lower(): n for n in FIELDS[entity]}
        out = {}
        for key, value in body.items():
            name = names.get(key.lower())
            if name is None:
                continue  # Autotask ignores unknown properties without a word
            if value is None:
                raise business_error(f"Value for field {key} cannot be null.")
            out[name] = value
        return out

    def _check_picklists(self, fields_body: dict, values: dict, names) -> None:
        for name in names:
            if name not in values:
                continue
            info = next(f for f in fields_body["fields"] if f["name"] == name)
            active = {v["value"]: v for v in info["picklistValues"] if v["isActive"]}
            if str(values[name]) not in active:
                raise business_error(f"Picklist value [{values[name]}] does not exist for {name}")

    def _check_lengths(self, fields_body: dict, values: dict) -> None:
        for info in fields_body["fields"]:
            value = values.get(info["name"])
            if info["dataType"] == "string" and info["length"] and isinstance(value, str) and len(value) > info["length"]:
                raise business_error(f"Value for field {info['name']} exceeds the maximum length of {info['length']}.")

    def create(self, entity: str, body) -> int:
        if entity == "Tickets":
            return self.create_ticket(body)
        if entity == "ContractServiceAdjustments":
            values = self._canonical(entity, body)
            return self.adjust(values.get("contractID"), values)
        raise FakeError(405, {"Message": "The requested resource does not support http method 'POST'."})

    def create_child(self, entity: str, parent: str, parent_id: int, body) -> int:
        if entity == "TicketNotes":
            return self.create_note(parent_id, body)
        if entity == "ContractServiceAdjustments":
            return self.adjust(parent_id, self._canonical(entity, body))
        raise FakeError(405, {"Message": "The requested resource does not support http method 'POST'."})

    def create_ticket(self, body) -> int:
        values = self._canonical("Tickets", body)
        values.pop("id", None)
        for name in ("ticketNumber", "createDate", "lastActivityDate", "completedDate"):
            values.pop(name, None)  # read-only: ignored
        for name in ("companyID", "title", "status", "priority"):
            if name not in values:
                raise business_error(f"{name} is required")
        self._validate_ticket(values)
        number = next(self._ticket_seq)
        stamp = _now()
        record = self._put("Tickets", {**values, "ticketNumber": f"T{self.today:%Y%m%d}.{number:04d}",
                                       "createDate": stamp, "lastActivityDate": stamp})  # fmt: skip
        return record["id"]

    def _validate_ticket(self, values: dict, existing: dict | None = None) -> None:
        merged = {**(existing or {}), **values}
        if merged.get("companyID") not in self.tables["Companies"]:
            raise business_error("Reference value on field: companyID of type: Company does not exist or is invalid.")
        self._check_picklists(self.tickets_fields, values, TICKET_PICKLISTS)
        self._check_lengths(self.tickets_fields, values)
        if values.get("subIssueType") is not None:
            info = next(f for f in self.tickets_fields["fields"] if f["name"] == "subIssueType")
            parent = {v["value"]: v["parentValue"] for v in info["picklistValues"]}[str(values["subIssueType"])]
            if parent != str(merged.get("issueType")):
                raise business_error(f"Picklist value [{values['subIssueType']}] does not exist for subIssueType")
        if values.get("contactID") is not None:
            contact = self.tables["Contacts"].get(values["contactID"])
            if contact is None or contact["companyID"] != merged["companyID"]:
                raise business_error("Reference value on field: contactID of type: Contact does not exist or is invalid.")
        if values.get("assignedResourceID") is not None and merged.get("assignedResourceRoleID") is None:
            raise business_error("When assigning a Resource, you must assign both a assignedResourceID and assignedResourceRoleID.")

    def patch(self, entity: str, body) -> int:
        if entity != "Tickets":
            raise FakeError(405, {"Message": "The requested resource does not support http method 'PATCH'."})
        values = self._canonical("Tickets", body)
        ticket = self.tables["Tickets"].get(values.pop("id", None))
        if ticket is None:
            raise business_error("No matching records found. The logged in Resource may not have the required permissions to update the data.")
        for name in ("ticketNumber", "createDate"):
            values.pop(name, None)
        self._validate_ticket(values, ticket)
        ticket.update(values)
        ticket["lastActivityDate"] = _now()
        if values.get("status") == 5:
            ticket["completedDate"] = ticket["lastActivityDate"]
        return ticket["id"]

    def create_note(self, ticket_id: int, body) -> int:
        if ticket_id not in self.tables["Tickets"]:
            raise business_error("Reference value on field: ticketID of type: Ticket does not exist or is invalid.")
        values = self._canonical("TicketNotes", body)
        values.pop("id", None)
        values["ticketID"] = ticket_id
        # The default ticket category requires note titles.
        for name in ("title", "description", "noteType", "publish"):
            if not values.get(name):
                raise business_error(f"{name} is required")
        self._check_picklists(self.notes_fields, values, NOTE_PICKLISTS)
        self._check_lengths(self.notes_fields, values)
        stamp = _now()
        return self._put("TicketNotes", {**values, "createDateTime": stamp, "lastActivityDate": stamp,
                                         "creatorResourceID": 29682885})["id"]  # fmt: skip

    def adjust(self, contract_id, values: dict) -> int:
        contract = self.tables["Contracts"].get(contract_id)
        if contract is None:
            raise business_error("Reference value on field: contractID of type: Contract does not exist or is invalid.")
        if contract["contractType"] != 7:
            raise business_error("Contract service adjustments can only be made to Recurring Service contracts.")
        for name in ("serviceID", "effectiveDate", "unitChange"):
            if name not in values:
                raise business_error(f"{name} is required")
        if not isinstance(values["unitChange"], int) or isinstance(values["unitChange"], bool):
            raise business_error("Invalid value for field unitChange.")
        effective = _parse_dt(values["effectiveDate"])
        if effective is None:
            raise business_error("Invalid value for field effectiveDate.")
        effective = effective.date()
        if _parse_dt(contract["startDate"]).date() > effective:
            raise business_error("An unexpected error has occurred.")  # the "unhelpful generic 500"
        lines = [cs for cs in self.tables["ContractServices"].values()
                 if cs["contractID"] == contract_id and cs["serviceID"] == values["serviceID"]]  # fmt: skip
        if values.get("contractServiceID") is not None:
            lines = [cs for cs in lines if cs["id"] == values["contractServiceID"]]
            if not lines:
                raise business_error("Reference value on field: contractServiceID of type: ContractService does not exist or is invalid.")
        if len(lines) > 1:
            raise business_error("An unexpected error has occurred.")
        if values["serviceID"] not in self.tables["Services"]:
            raise business_error("Reference value on field: serviceID of type: Service does not exist or is invalid.")
        line = lines[0] if lines else self.add_contract_service(contract_id, values["serviceID"], units=0)
        rows = sorted((r for r in self.tables["ContractServiceUnits"].values() if r["contractServiceID"] == line["id"]),
                      key=lambda r: r["startDate"])  # fmt: skip
        for row in rows:
            start, end = _parse_dt(row["startDate"]).date(), _parse_dt(row["endDate"]).date()
            if end < effective:
                continue
            if row["units"] + values["unitChange"] < 0:
                raise business_error("The number of units cannot be less than zero.")
            if start < effective:
                # An adjustment inside a period splits it: the new row runs from the effective date.
                row["endDate"] = _iso(effective - timedelta(days=1))
                self._put("ContractServiceUnits", {**row, "id": None, "startDate": _iso(effective), "endDate": _iso(end),
                                                   "units": row["units"] + values["unitChange"]})  # fmt: skip
            else:
                row["units"] += values["unitChange"]
        record = self._put("ContractServiceAdjustments", {**values, "contractID": contract_id, "contractServiceID": line["id"]})
        return record["id"]


class _Handler(BaseHTTPRequestHandler):
    fake: AutotaskFake
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes; without this, delayed ACKs add ~40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        entry = LoggedRequest(
            method=self.command, path=parts.path, query=parse_qs(parts.query), headers=dict(self.headers.items()),
            body=body, started=time.monotonic(),
        )  # fmt: skip
        with self.fake.lock:
            self.fake.requests.append(entry)
        headers: dict = {}
        try:
            if isinstance(body, str):
                raise business_error("The request body is not valid JSON.")
            status, payload, headers = self.fake.handle(entry)
        except FakeError as error:
            status, payload, headers = error.status, error.body, error.headers
        except Exception as error:  # a bug in the fake must still answer, like the real thing
            status, payload = 500, {"errors": [f"Fake failure: {type(error).__name__}: {error}"]}
        entry.status, entry.ended = status, time.monotonic()
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake Autotask PSA for local development and tests.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--companies", type=int, default=650)
    parser.add_argument("--username", default=USERNAME)
    parser.add_argument("--secret", default=SECRET)
    parser.add_argument("--integration-code", default=INTEGRATION_CODE)
    args = parser.parse_args(argv)
    fake = AutotaskFake(username=args.username, secret=args.secret, integration_code=args.integration_code,
                        port=args.port, host=args.host, latency_ms=args.latency_ms, companies=args.companies)  # fmt: skip
    fake.start()
    print(f"Autotask fake on {fake.url}", flush=True)
    print(f"  AUTOTASK_ZONE_DISCOVERY_URL={fake.discovery_url}", flush=True)
    print(f"  Username={fake.username}  Password={fake.secret}  Tracking Identifier={fake.integration_code}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
