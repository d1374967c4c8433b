"""The real Autotask provider, ticketing and billing against the HTTP fake over loopback.

No database or worker: this drives the vendor package end to end through real sockets, the
one HTTP path (retries, limiter, redaction, log hook) and the fake's Autotask behaviour.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from integrations.autotask.client import query_body
from integrations.autotask.provider import AutotaskProvider
from integrations.base.billing import BillingTarget
from integrations.base.client import Transport
from integrations.base.errors import (
    AuthFailedError,
    BlockedError,
    InvalidError,
    PermissionMissingError,
    RateLimitedError,
    UnavailableError,
)
from integrations.base.ticketing import TicketDraft
from tests.fakes.autotask_server import INTEGRATION_CODE, SECRET, USERNAME, AutotaskFake

ROOT = Path(__file__).resolve().parents[2]


class SemaphoreLimiter:
    """An in-process stand-in for the service layer's shared limiter: N threads per bucket."""

    def __init__(self, per_bucket: int):
        self.per_bucket = per_bucket
        self._lock = threading.Lock()
        self._semaphores: dict[str, threading.Semaphore] = {}

    @contextlib.contextmanager
    def acquire(self, bucket: str):
        with self._lock:
            semaphore = self._semaphores.setdefault(bucket, threading.Semaphore(self.per_bucket))
        with semaphore:
            yield


@pytest.fixture(scope="module")
def fake():
    with AutotaskFake() as fake:
        yield fake


@pytest.fixture
def records():
    return []


@pytest.fixture
def make(fake, records):
    fake.reset_log()
    fake.restore()
    fake.denied.clear()

    def make(secrets=None, username=USERNAME, **transport_options) -> AutotaskProvider:
        transport = Transport(allow_private=True, sleep=lambda s: None, on_request=records.append, **transport_options)
        return AutotaskProvider(
            {"username": username, "zone_discovery_url": fake.discovery_url},
            secrets or {"secret": SECRET, "integration_code": INTEGRATION_CODE},
            transport,
            today=lambda: fake.today,
        )

    return make


def assert_clean(records, *texts):
    blob = json.dumps([r.__dict__ for r in records], default=str) + "".join(texts)
    assert SECRET not in blob and INTEGRATION_CODE not in blob


# --- linking -------------------------------------------------------------------------------------


def test_link_verify_and_permissions(fake, make, records):
    provider = make()
    result = provider.verify()
    assert result.config_updates == {"zone_url": fake.zone_url, "web_url": fake.web_url, "zone_name": "Fake Zone 14"}
    assert provider.check_permissions().ok
    api_calls = [r for r in fake.requests if "zoneinformation" not in r.path.lower()]
    for request in api_calls:
        assert request.headers["ApiIntegrationCode"] == INTEGRATION_CODE
        assert request.headers["UserName"] == USERNAME
        assert request.headers["Secret"] == SECRET
        assert "ImpersonationResourceId" not in request.headers
    zone = [r for r in fake.requests if "zoneinformation" in r.path.lower()]
    assert zone and "Secret" not in zone[0].headers
    assert_clean(records)


def test_wrong_secret_fails_once_and_is_not_retried(fake, make, records):
    with pytest.raises(AuthFailedError) as caught:
        make(secrets={"secret": "wrong-secret-value", "integration_code": INTEGRATION_CODE}).verify()
    assert str(caught.value).startswith("Authentication failed: Re-enter the Username, Password, and Tracking Identifier.")
    assert len(fake.requests_to("Companies")) == 1  # one failed login, not four: Autotask locks users
    assert_clean(records, str(caught.value))


def test_wrong_tracking_identifier(fake, make, records):
    with pytest.raises(AuthFailedError, match="Tracking Identifier") as caught:
        make(secrets={"secret": SECRET, "integration_code": "WRONGCODE0000000000000000000"}).verify()
    assert_clean(records, str(caught.value))


def test_unknown_username(fake, make):
    with pytest.raises(AuthFailedError, match="does not know the Username “nobody@acme.example”"):
        make(username="nobody@acme.example").verify()


def test_revoked_credentials(fake, make):
    provider = make()
    provider.verify()
    fake.revoke()
    with pytest.raises(AuthFailedError):
        list(provider.companies())


def test_denied_module_is_reported_and_billing_names_both_modules(fake, make):
    fake.deny("Contracts")
    provider = make()
    report = provider.check_permissions()
    assert [c.key for c in report.missing] == ["contracts"]
    assert report.missing[0].label == "Contracts — read and write access to Recurring Service Contracts"
    with pytest.raises(PermissionMissingError, match="Billing needs both modules: Contracts and Services"):
        provider.billing().read_line(BillingTarget(company_id="1", product_id="1", agreement_id="100"))


# --- picklists -----------------------------------------------------------------------------------


def test_companies_page_through_hundreds(fake, make):
    companies = list(make().companies())
    assert len(companies) == len([c for c in fake.tables["Companies"].values() if c["isActive"] and c["id"] != 0])
    assert "0" not in {c.id for c in companies}
    queries = fake.requests_to("Companies", "POST")
    assert len(queries) == 2
    assert queries[1].path.endswith("/query/next") and queries[1].body == queries[0].body


def test_ticket_picklists_come_from_one_metadata_call(fake, make):
    provider = make()
    assert [q.name for q in provider.picklist("queues")][-1] == "Level I Support"
    assert [s.id for s in provider.picklist("sub_issue_types", "11")] == ["110"]
    provider.picklist("statuses")
    assert len(fake.requests_to("Tickets", "GET")) == 1
    assert [c.id for c in provider.picklist("contracts", "1")] == ["100", "105"]
    services = provider.picklist("contract_services", "103")
    assert [s.extra["service_id"] for s in services] == ["1", "1"]


# --- tickets -------------------------------------------------------------------------------------


def test_ticket_lifecycle(fake, make, records):
    ticketing = make().ticketing()
    draft = TicketDraft(
        reference="hub-incident-int-1", company_id="2", summary="Malware found", description="x" * 20_000,
        board_id="8", status_id="1", priority_id="4", extra={"issue_type_id": "10", "sub_issue_type_id": "101"},
    )  # fmt: skip
    assert ticketing.find_by_reference(draft.reference) is None
    ref = ticketing.create(draft)
    stored = fake.tables["Tickets"][int(ref.id)]
    assert (stored["companyID"], stored["queueID"], stored["priority"], stored["subIssueType"]) == (2, 8, 4, 101)
    assert stored["externalID"] == "hub-incident-int-1" and len(stored["description"]) == 8000
    assert ref.number == stored["ticketNumber"] and ref.url.endswith(f"TicketID={ref.id}")
    assert ticketing.find_by_reference(draft.reference) == ref

    closed = ticketing.update(ref.id, status_id="5")
    assert closed.closed and fake.tables["Tickets"][int(ref.id)]["status"] == 5
    patches = fake.requests_to("Tickets", "PATCH")
    assert [p.body for p in patches] == [{"id": int(ref.id), "status": 5}]
    ticketing.update(ref.id, status_id="5")
    assert len(fake.requests_to("Tickets", "PATCH")) == 1  # unchanged: nothing written

    ticketing.add_note(ref.id, "Seen again at 10:15, count 2")
    [note] = [n for n in fake.tables["TicketNotes"].values() if n["ticketID"] == int(ref.id)]
    assert (note["title"], note["noteType"], note["publish"]) == ("Seen again at 10:15, count 2", 3, 2)
    assert_clean(records)


def test_rejected_picklist_value_shows_autotasks_words(fake, make):
    draft = TicketDraft(reference="hub-incident-int-2", company_id="1", summary="x", description="", status_id="1", priority_id="6")
    with pytest.raises(InvalidError) as caught:
        make().ticketing().create(draft)
    assert caught.value.field == "priority"
    assert "Picklist value [6] does not exist for priority" in str(caught.value)


# --- billing -------------------------------------------------------------------------------------


def test_billing_messages_and_writes(fake, make):
    billing = make().billing()
    today = fake.today

    def target(contract, service="1", company=""):
        return BillingTarget(company_id=company, product_id=service, agreement_id=contract)

    messages = {}
    for contract in ("101", "102", "103"):
        with pytest.raises(BlockedError) as caught:
            billing.read_line(target(contract))
        messages[contract] = str(caught.value)
    start = fake.tables["Contracts"][101]["startDate"][:10]
    end = fake.tables["Contracts"][102]["endDate"][:10]
    assert messages["101"] == (
        f"Contract “Globex Go-Live Contract” has a start date of {start}, which is in the future. Billing cannot be "
        "synced until the contract period has begun — update the contract start date in Autotask or wait until the "
        "contract is active."
    )
    assert messages["102"] == (
        f"Contract “Initech 2023 Contract” ended on {end}. Billing cannot be synced to an expired contract — extend "
        "the contract end date in Autotask or map this tenant to an active contract."
    )
    assert messages["103"] == (
        "Duplicate service found — the mapped Autotask Service appears 2 times on this contract. Remove the duplicate "
        "in Autotask by deleting it (if not yet invoiced) or setting its units to 0 with a past-dated removal, then retry."
    )
    assert not fake.requests_to("ContractServiceAdjustments")

    line = billing.read_line(target("100", company="1"))
    before = line.quantity
    assert before == fake.units_today(int(line.line_id), today)
    billing.write_quantity(target("100"), line, before + 5)
    assert fake.units_today(int(line.line_id), today) == before + 5
    [adjustment] = [r.body for r in fake.requests_to("ContractServiceAdjustments")]
    assert adjustment["unitChange"] == 5 and adjustment["effectiveDate"] == f"{today.isoformat()}T00:00:00Z"

    again = billing.read_line(target("100"))
    assert again.quantity == before + 5
    billing.write_quantity(target("100"), again, before + 5)
    assert len(fake.requests_to("ContractServiceAdjustments")) == 1  # unchanged: nothing written
    billing.write_quantity(target("100"), again, before + 2)
    assert billing.read_line(target("100")).quantity == before + 2

    new = billing.read_line(target("105", service="3"))
    assert new.line_id is None and new.quantity == 0
    created = billing.write_quantity(target("105", service="3"), new, 4)
    assert created.line_id and fake.units_today(int(created.line_id), today) == 4


def test_prefetched_run_reads_every_tenant_in_three_requests(fake, make):
    billing = make().billing()
    targets = [BillingTarget(company_id="", product_id="1", agreement_id=c) for c in ("100", "101", "102", "103", "999")]
    fake.reset_log()
    billing.prefetch(targets)
    outcomes = []
    for target in targets:
        try:
            outcomes.append(billing.read_line(target).quantity)
        except Exception as error:  # each tenant fails on its own
            outcomes.append(type(error).__name__)
    assert len(fake.requests) == 3
    line_id = next(cs["id"] for cs in fake.tables["ContractServices"].values() if cs["contractID"] == 100)
    assert outcomes == [fake.units_today(line_id), "BlockedError", "BlockedError", "BlockedError", "NotFoundError"]


# --- back-pressure -------------------------------------------------------------------------------


def test_429_storm_backs_off_and_finishes(fake, make, records):
    provider = make()
    fake.inject(429, times=3, retry_after="1")
    assert provider.services()
    assert [r.status for r in records][-4:] == [429, 429, 429, 200]


def test_server_errors_on_reads_are_retried(fake, make):
    provider = make()
    provider.client  # discover before the fault so it hits the API call
    fake.inject(503, times=2)
    assert provider.services()


def test_a_bare_500_is_unavailable_and_not_retried(fake, make):
    provider = make()
    provider.client
    fake.reset_log()
    fake.inject(500, entity="Services")
    with pytest.raises(UnavailableError, match=r"Autotask failed \(HTTP 500\)"):
        provider.services()
    assert len(fake.requests_to("Services")) == 1
    assert provider.services()


def test_the_limiter_keeps_three_threads_per_entity(fake, make):
    fake.latency_ms = 30
    try:
        provider = make(limiter=SemaphoreLimiter(3))
        provider.client
        fake.reset_log()
        body = query_body([{"op": "eq", "field": "isActive", "value": True}], max_records=1)
        with ThreadPoolExecutor(max_workers=10) as pool:
            list(pool.map(lambda _: provider.client.query("Services", body), range(20)))
        assert fake.max_concurrency["services"] == 3
        assert fake.refused_for_threads == 0
    finally:
        fake.latency_ms = 0


def test_the_fake_refuses_a_fourth_thread(fake, make):
    fake.latency_ms = 50
    try:
        provider = make(max_retries=0)
        provider.client
        fake.reset_log()
        body = query_body([{"op": "eq", "field": "isActive", "value": True}], max_records=1)

        def call(_):
            try:
                provider.client.query("Services", body)
                return "ok"
            except RateLimitedError:
                return "limited"

        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(call, range(8)))
        assert fake.max_concurrency["services"] > 3
        assert "limited" in outcomes and fake.refused_for_threads == outcomes.count("limited")
    finally:
        fake.latency_ms = 0


def test_hourly_budget():
    with AutotaskFake(companies=5, hourly_limit=3) as small:
        provider = AutotaskProvider(
            {"username": USERNAME, "zone_discovery_url": small.discovery_url},
            {"secret": SECRET, "integration_code": INTEGRATION_CODE},
            Transport(allow_private=True, sleep=lambda s: None, max_retries=1),
        )
        provider.verify()
        provider.services()
        provider.services()
        with pytest.raises(RateLimitedError):
            provider.services()


# --- the fake on its own -------------------------------------------------------------------------


def test_fake_runs_as_a_command():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.autotask_server", "--port", str(port), "--companies", "10"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = requests.get(
                    f"http://127.0.0.1:{port}/atservicesrest/v1.0/zoneInformation", params={"user": USERNAME}, timeout=2
                )
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert answer.json()["url"] == f"http://127.0.0.1:{port}/ATServicesRest/"
    finally:
        process.terminate()
        process.wait(timeout=10)
