"""integrations.services against the in-memory PSA: linking, verification, permissions,
picklists, company import and mapping, pause and removal; and the shared request limiter."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.core import serializers
from django.core.cache import cache
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from integrations import services, tasks
from integrations.base.errors import RateLimitedError
from integrations.base.budget import RequestBudget
from integrations.limits import CacheLimiter
from integrations.models import CompanyMapping, Connection, IntegrationLog, Picklist, PsaCompany
from tests.factories import make_tenant
from tests.fakes import memory

pytestmark = pytest.mark.django_db

SECRET = "mem-secret-4b7e19c2d0aa"
NEW_SECRET = "mem-secret-rotated-88aa51"


@pytest.fixture(autouse=True)
def _own_cache(private_cache):
    """The limiter and token store use Django's cache: a private in-memory one per test."""


@pytest.fixture
def linked(personas, memory_psa, eager_tasks, django_capture_on_commit_callbacks):
    """Account A linked (ConnectWise slug, memory PSA behind it) and verified by the eager task."""
    with django_capture_on_commit_callbacks(execute=True):
        connection = services.save_connection(
            personas.account_a, "connectwise", {"site": "acme.example.com"}, {"api_key": SECRET}
        )
    connection.refresh_from_db()
    assert connection.status == Connection.Status.CONNECTED, connection.last_error
    memory_psa.calls.clear()
    return connection


def all_log_text(account=None) -> str:
    rows = IntegrationLog.objects.all() if account is None else IntegrationLog.objects.for_account(account)
    return serializers.serialize("json", rows)


def assert_no_secret_anywhere(*secrets: str) -> None:
    dump = all_log_text() + serializers.serialize("json", Connection.objects.all())
    for secret in secrets:
        assert secret not in dump


# Linking --------------------------------------------------------------------------------------------


def test_save_connection_encrypts_and_queues_verification_after_commit(
    personas, memory_psa, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        connection = services.save_connection(
            personas.account_a, "connectwise", {"site": "acme.example.com"}, {"api_key": SECRET}, correlation_id="cid-1"
        )
        assert queued == []  # nothing leaves before the commit
    assert len(callbacks) == 1
    callbacks[0]()
    assert queued == [("verify_connection", (str(connection.pk), "cid-1"))]

    connection.refresh_from_db()
    assert connection.status == Connection.Status.VERIFYING
    assert connection.secrets_set == ["api_key"]
    assert connection.config == {"site": "acme.example.com"}
    assert connection.credentials.startswith("fernet:") and SECRET not in connection.credentials
    assert connection.credentials_key_id and connection.credentials_updated_at
    assert services.load_credentials(connection) == {"api_key": SECRET}
    # The raw table holds no plaintext either.
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT * FROM integrations_connection")
        assert SECRET not in repr(cursor.fetchall())
    log = IntegrationLog.objects.for_account(personas.account_a).get()
    assert (log.action, log.connection_id, log.correlation_id) == ("connection.link", connection.pk, "cid-1")
    assert "verifying" in log.message
    assert_no_secret_anywhere(SECRET)


def test_a_rolled_back_link_queues_nothing(personas, memory_psa, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            services.save_connection(personas.account_a, "connectwise", {"site": "a.example.com"}, {"api_key": SECRET})
            raise RuntimeError("the request failed after saving")
    assert queued == []
    assert not Connection.objects.exists()


def test_a_second_vendor_is_refused_with_a_clear_message(personas, memory_psa, queued):
    services.save_connection(personas.account_a, "connectwise", {"site": "a.example.com"}, {"api_key": SECRET})
    with pytest.raises(services.LinkRefused) as refused:
        services.save_connection(personas.account_a, "autotask", {"site": "b.example.com"}, {"api_key": NEW_SECRET})
    assert "linked to ConnectWise Manage" in str(refused.value)
    assert "Remove that integration first" in str(refused.value)
    connection = Connection.objects.get()
    assert connection.vendor == "connectwise" and connection.config == {"site": "a.example.com"}
    assert services.load_credentials(connection) == {"api_key": SECRET}


def test_update_keeps_the_stored_secret_when_blank_and_keeps_mappings(
    personas, linked, queued, django_capture_on_commit_callbacks
):
    tenant = make_tenant(personas.account_a, name="Acme Corp")
    services.map_tenant(personas.account_a, tenant, "1", "Acme Corp")
    with django_capture_on_commit_callbacks(execute=True):
        connection = services.save_connection(
            personas.account_a, "connectwise", {"site": "new.example.com"}, {"api_key": ""}
        )
    connection.refresh_from_db()
    assert services.load_credentials(connection) == {"api_key": SECRET}
    assert connection.config["site"] == "new.example.com"
    assert connection.config["codebase"] == "v2025_1/"  # discovered config stays until re-verified
    assert connection.status == Connection.Status.VERIFYING
    assert CompanyMapping.objects.for_account(personas.account_a).get().company_id == "1"
    assert [name for name, _ in queued] == ["verify_connection"]
    assert IntegrationLog.objects.filter(action="connection.update").exists()

    services.save_connection(personas.account_a, "connectwise", {"site": "new.example.com"}, {"api_key": NEW_SECRET})
    connection.refresh_from_db()
    assert services.load_credentials(connection) == {"api_key": NEW_SECRET}
    assert connection.secrets_set == ["api_key"]
    assert_no_secret_anywhere(SECRET, NEW_SECRET)


# Verification ------------------------------------------------------------------------------------------


def test_verify_success_connects_updates_config_and_refreshes_picklists(personas, linked, memory_psa):
    connection = linked
    assert connection.config == {"site": "acme.example.com", "codebase": "v2025_1/"}
    assert connection.verified_at is not None and connection.last_error == ""
    assert memory_psa.secrets_seen[0] == {"api_key": SECRET}
    # The picklists without a parent were fetched by the queued refresh.
    lists = {p.kind: p for p in Picklist.objects.filter(connection=connection)}
    assert set(lists) == {"boards", "priorities"}
    assert [item["name"] for item in lists["priorities"].items] == ["Priority 1 - Critical", "Priority 3 - Normal"]
    assert all(p.fetched_at and not p.error for p in lists.values())
    verify = IntegrationLog.objects.get(action="connection.verify", http_method="")
    assert verify.outcome == IntegrationLog.Outcome.OK
    assert verify.message == "Connected to ConnectWise Manage (Memory PSA (acme))."
    request = IntegrationLog.objects.get(action="connection.verify", http_method="GET")
    assert (request.http_path, request.http_status, request.correlation_id) == ("/api/system/info", 200, verify.correlation_id)
    # The picklist refresh shares the verification's correlation id.
    assert IntegrationLog.objects.filter(action="connection.picklist", correlation_id=verify.correlation_id).count() == 2
    assert_no_secret_anywhere(SECRET)


def test_verify_auth_failure_shows_the_provider_message(
    personas, memory_psa, eager_tasks, django_capture_on_commit_callbacks
):
    memory_psa.mode = "auth_failed"
    with django_capture_on_commit_callbacks(execute=True):
        connection = services.save_connection(personas.account_a, "connectwise", {"site": "a.example.com"}, {"api_key": SECRET})
    connection.refresh_from_db()
    assert connection.status == Connection.Status.FAILED
    assert connection.last_error == "Authentication failed: re-check the Site and the API key. Memory PSA said: invalid key"
    assert len(memory_psa.called("verify")) == 1  # permanent: never retried (Autotask locks users out)
    failure = IntegrationLog.objects.get(action="connection.verify", http_method="")
    assert failure.outcome == IntegrationLog.Outcome.ERROR and failure.message == connection.last_error
    request = IntegrationLog.objects.get(action="connection.verify", http_method="GET")
    assert (request.http_status, request.outcome) == (401, IntegrationLog.Outcome.ERROR)
    assert not Picklist.objects.exists()  # nothing refreshed for a failed link
    assert_no_secret_anywhere(SECRET)


def test_an_unexpected_error_gives_a_reference_and_never_the_secret(
    personas, memory_psa, eager_tasks, django_capture_on_commit_callbacks, caplog
):
    memory_psa.mode = "crash"  # raises RuntimeError with the API key in its text
    with django_capture_on_commit_callbacks(execute=True):
        connection = services.save_connection(personas.account_a, "connectwise", {"site": "a.example.com"}, {"api_key": SECRET})
    connection.refresh_from_db()
    assert connection.status == Connection.Status.FAILED
    assert connection.last_error.startswith("Something went wrong in the hub (reference ")
    assert_no_secret_anywhere(SECRET)
    # The server log has the reference, the kind of error and where: not the text holding the secret.
    reference = connection.last_error.split("reference ")[1].split(")")[0]
    assert f"RuntimeError in the hub (reference {reference})" in caplog.text
    assert "memory.py" in caplog.text
    assert SECRET not in caplog.text


def test_transient_failure_is_retried_then_recorded_after_the_last_retry(
    personas, memory_psa, eager_tasks, django_capture_on_commit_callbacks
):
    memory_psa.mode = "unavailable"
    with django_capture_on_commit_callbacks(execute=True):
        connection = services.save_connection(personas.account_a, "connectwise", {"site": "a.example.com"}, {"api_key": SECRET})
    connection.refresh_from_db()
    assert len(memory_psa.called("verify")) == tasks.VERIFY_RETRIES + 1
    assert connection.status == Connection.Status.FAILED
    assert connection.last_error.startswith("Could not reach Memory PSA at a.example.com")
    # One request row per attempt, and one failure row at the end.
    assert IntegrationLog.objects.filter(action="connection.verify", http_status=503).count() == tasks.VERIFY_RETRIES + 1
    assert IntegrationLog.objects.filter(action="connection.verify", http_method="", outcome="error").count() == 1


def test_transient_failure_then_recovery_connects(personas, memory_psa, eager_tasks, django_capture_on_commit_callbacks):
    memory_psa.mode, memory_psa.failures = "rate_limited", 2
    with django_capture_on_commit_callbacks(execute=True):
        connection = services.save_connection(personas.account_a, "connectwise", {"site": "a.example.com"}, {"api_key": SECRET})
    connection.refresh_from_db()
    assert len(memory_psa.called("verify")) == 3
    assert connection.status == Connection.Status.CONNECTED and connection.last_error == ""


def test_retry_countdown_honours_retry_after():
    class FakeTask:
        max_retries = 3

        class request:
            retries = 0

        def retry(self, exc, countdown):
            raise RuntimeError(countdown)

    with pytest.raises(RuntimeError) as waited:
        tasks._retry_or_give_up(FakeTask(), RateLimitedError("slow down", retry_after=42), "x", "a", "c")
    assert waited.value.args == (42,)
    with pytest.raises(RuntimeError) as waited:
        tasks._retry_or_give_up(FakeTask(), RateLimitedError("slow down"), "x", "a", "c")
    assert waited.value.args == (10,)


def test_a_ciphertext_moved_to_another_account_is_refused(personas, linked, memory_psa):
    other = Connection.objects.create(account=personas.account_b, vendor="connectwise", credentials=linked.credentials)
    services.verify_connection(str(other.pk), "cid")
    other.refresh_from_db()
    assert other.status == Connection.Status.FAILED
    assert "Update credentials" in other.last_error
    assert memory_psa.calls == []


# Permissions -----------------------------------------------------------------------------------------------


def test_check_permissions_stores_the_report_and_logs_what_is_missing(personas, linked, memory_psa):
    memory_psa.permission_report = memory.missing_priority_report()
    report = services.check_permissions(str(linked.pk), "cid-p")
    assert not report.ok
    linked.refresh_from_db()
    assert linked.permissions_checked_at is not None
    missing = [check for check in linked.permission_report if not check["ok"]]
    assert [(c["key"], c["label"], c["feature"]) for c in missing] == [("service.priority", "Service > Priority", "tickets")]
    assert missing[0]["fix"].startswith("System > Security Roles")
    log = IntegrationLog.objects.get(action="connection.permissions", http_method="")
    assert log.outcome == IntegrationLog.Outcome.ERROR
    assert log.message == "Missing permissions: Memory PSA API user does not have permission to access Service > Priority."

    memory_psa.permission_report = memory.default_report()
    assert services.check_permissions(str(linked.pk), "cid-q").ok
    linked.refresh_from_db()
    assert all(check["ok"] for check in linked.permission_report)
    assert IntegrationLog.objects.filter(action="connection.permissions", message__startswith="Every permission").exists()


def test_check_permissions_that_cannot_run_records_why(personas, linked, memory_psa):
    memory_psa.permission_report = memory.missing_priority_report()
    services.check_permissions(str(linked.pk), "cid")
    memory_psa.mode = "auth_failed"
    assert services.check_permissions(str(linked.pk), "cid") is None
    linked.refresh_from_db()
    assert linked.last_error.startswith("Authentication failed")
    assert len([c for c in linked.permission_report if not c["ok"]]) == 1  # the last report stays
    assert IntegrationLog.objects.filter(action="connection.permissions", outcome="error", message__startswith="Authentication").exists()


# Picklists ------------------------------------------------------------------------------------------------


def test_refresh_picklist_stores_items_then_the_error(personas, linked, memory_psa):
    entry = services.refresh_picklist(str(linked.pk), "statuses", "1", "cid")
    assert [(i["id"], i["name"], i["extra"]) for i in entry.items] == [("10", "New", {}), ("11", "Closed", {"closed": True})]
    assert entry.fetched_at is not None and entry.error == ""
    assert memory_psa.called("picklist") == [("statuses", "1")]

    memory_psa.mode = "permission_missing"
    entry = services.refresh_picklist(str(linked.pk), "statuses", "1", "cid")
    assert entry.error == "Could not refresh statuses: Memory PSA API user does not have permission to access Service > Priority."
    assert len(entry.items) == 2  # the last good list stays usable

    memory_psa.mode = "ok"
    entry = services.refresh_picklist(str(linked.pk), "statuses", "1", "cid")
    assert entry.error == ""


def test_a_picklist_refresh_that_keeps_failing_transiently_records_the_error(
    personas, linked, memory_psa, django_capture_on_commit_callbacks
):
    memory_psa.mode = "unavailable"
    with django_capture_on_commit_callbacks(execute=True):
        services.queue_picklist_refresh(linked, kinds=[("statuses", "2")])
    entry = Picklist.objects.get(connection=linked, kind="statuses", parent_id="2")
    assert len(memory_psa.called("picklist")) == tasks.refresh_picklist.max_retries + 1
    assert entry.error.startswith("Could not refresh statuses: Could not reach Memory PSA")
    assert entry.fetched_at is None


def test_picklist_never_calls_the_psa_and_queues_a_refresh_when_stale(
    personas, linked, memory_psa, queued, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(services, "build_provider", lambda *a, **k: pytest.fail("picklist() called the PSA"))
    with django_capture_on_commit_callbacks(execute=True):
        fresh = services.picklist(linked, "priorities")
    assert len(fresh.items) == 2 and queued == []

    long_ago = timezone.now() - timezone.timedelta(hours=25)
    Picklist.objects.filter(pk=fresh.pk).update(fetched_at=long_ago, refresh_requested_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):
        stale = services.picklist(linked, "priorities")
        services.picklist(linked, "priorities")  # asked twice: queued once
    assert len(stale.items) == 2  # the stale list is still shown meanwhile
    assert [(name, args[1:3]) for name, args in queued] == [("refresh_picklist", ("priorities", ""))]

    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.picklist(linked, "statuses", "2") is None  # never fetched: queued
    assert [(name, args[1:3]) for name, args in queued] == [("refresh_picklist", ("statuses", "2"))]

    queued.clear()
    Connection.objects.filter(pk=linked.pk).update(status=Connection.Status.FAILED)
    linked.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        services.picklist(linked, "boards", "9")
    assert queued == []  # no point asking a PSA we cannot reach
    assert memory_psa.calls == []


# Companies and mapping ----------------------------------------------------------------------------------


def test_import_companies_upserts_and_marks_vanished_ones_inactive(personas, linked, memory_psa):
    assert services.import_companies(str(linked.pk), "cid-1") == 5
    assert set(PsaCompany.objects.filter(connection=linked).values_list("name", flat=True)) == {
        "Acme Corp", "Globex, Inc.", "Initech LLC", "Umbrella Holdings", "Stark Industries"
    }
    assert len(memory_psa.called("companies")) == 3  # paged through to the end
    assert IntegrationLog.objects.filter(action="import.companies", http_method="GET").count() == 3
    log = IntegrationLog.objects.get(action="import.companies", http_method="")
    assert log.message == "Imported 5 companies from ConnectWise Manage."
    linked.refresh_from_db()
    assert linked.companies_imported_at is not None

    memory_psa.companies = [
        memory.Company("1", "Acme Corporation", identifier="AcmeCorp"),
        memory.Company("2", "Globex, Inc.", identifier="Globex"),
        memory.Company("6", "Wayne Enterprises", identifier="Wayne"),
    ]
    assert services.import_companies(str(linked.pk), "cid-2") == 3
    companies = {c.company_id: c for c in PsaCompany.objects.filter(connection=linked)}
    assert companies["1"].name == "Acme Corporation" and companies["1"].active
    assert companies["6"].name == "Wayne Enterprises" and companies["6"].active
    assert {cid for cid, c in companies.items() if not c.active} == {"3", "4", "5"}
    assert PsaCompany.objects.count() == 6  # upserted, not duplicated

    # The PSA lists it again: active again.
    memory_psa.companies.append(memory.Company("3", "Initech LLC"))
    services.import_companies(str(linked.pk), "cid-3")
    assert PsaCompany.objects.get(company_id="3").active


def test_import_is_skipped_while_paused(personas, linked, memory_psa):
    services.set_paused(linked, paused=True)
    assert services.import_companies(str(linked.pk), "cid") == 0
    assert memory_psa.calls == []
    log = IntegrationLog.objects.get(action="import.companies")
    assert log.outcome == IntegrationLog.Outcome.SKIPPED


def test_import_failure_is_logged(personas, linked, memory_psa):
    memory_psa.mode = "auth_failed"
    assert services.import_companies(str(linked.pk), "cid") == 0
    log = IntegrationLog.objects.get(action="import.companies", http_method="")
    assert log.outcome == "error" and log.message.startswith("Import failed: Authentication failed")


def test_an_import_that_keeps_failing_transiently_is_logged_after_the_retries(
    personas, linked, memory_psa, django_capture_on_commit_callbacks
):
    memory_psa.mode = "rate_limited"
    with django_capture_on_commit_callbacks(execute=True):
        services.queue_company_import(linked)
    assert len(memory_psa.called("companies")) == tasks.import_companies.max_retries + 1
    failure = IntegrationLog.objects.get(action="import.companies", http_method="")
    assert failure.outcome == "error"
    assert failure.message == "Import failed: Memory PSA is limiting requests (HTTP 429); the hub will try again later."
    assert not PsaCompany.objects.exists()


@pytest.mark.parametrize(
    ("tenant_name", "expected", "how"),
    [
        ("Acme Corp", "Acme Corp", "exact"),
        ("ACME corp.", "Acme Corp", "normalised"),
        ("Globex", "Globex, Inc.", "normalised"),
        ("globex inc", "Globex, Inc.", "normalised"),
        ("Initech, L.L.C.", "Initech LLC", "normalised"),
        ("Initeck", "Initech LLC", "close"),
        ("Initech", "Initech LLC", "normalised"),
        ("Umbrela Holdings", "Umbrella Holdings", "close"),
        ("Stark Industries Ltd", "Stark Industries", "normalised"),
        ("Nothing Alike", None, ""),
    ],
)
def test_suggestions_exact_then_normalised_then_close(tenant_name, expected, how):
    companies = [PsaCompany(company_id=str(i), name=c.name) for i, c in enumerate(_memory_companies())]
    suggestion, found_how = services.suggest_company(tenant_name, companies)
    assert (suggestion.name if suggestion else None, found_how) == (expected, how)


def test_an_exact_match_wins_over_a_normalised_one():
    companies = [PsaCompany(company_id="1", name="ACME CORP"), PsaCompany(company_id="2", name="Acme Corp")]
    assert services.suggest_company("Acme Corp", companies) == (companies[1], "exact")
    assert services.suggest_company("acme corp", companies)[1] == "normalised"


def test_a_name_that_is_only_a_suffix_suggests_nothing():
    companies = [PsaCompany(company_id="1", name="Inc."), PsaCompany(company_id="2", name="Acme Corp")]
    assert services.suggest_company("LLC", companies) == (None, "")


def _memory_companies():
    state = memory.MemoryState()
    state.reset()
    return state.companies


def test_mapping_rows_suggest_only_for_unmapped_tenants(personas, linked):
    services.import_companies(str(linked.pk), "cid")
    acme = make_tenant(personas.account_a, name="ACME Corp.")
    globex = make_tenant(personas.account_a, name="Globex")
    services.map_tenant(personas.account_a, globex, "5")
    rows = {row["tenant"].name: row for row in services.mapping_rows(personas.account_a, linked, [acme, globex])}
    assert (rows["ACME Corp."]["suggestion"].name, rows["ACME Corp."]["how"]) == ("Acme Corp", "normalised")
    assert rows["Globex"]["mapping"].company_name == "Stark Industries" and rows["Globex"]["suggestion"] is None


def test_map_and_unmap_a_tenant(personas, linked):
    services.import_companies(str(linked.pk), "cid")
    tenant = make_tenant(personas.account_a, name="Initech")
    mapping = services.map_tenant(personas.account_a, tenant, "3")
    assert (mapping.company_id, mapping.company_name, mapping.account_id) == ("3", "Initech LLC", personas.account_a.pk)
    services.map_tenant(personas.account_a, tenant, "4")
    assert CompanyMapping.objects.get(tenant=tenant).company_name == "Umbrella Holdings"
    assert services.map_tenant(personas.account_a, tenant, "") is None
    assert not CompanyMapping.objects.filter(tenant=tenant).exists()
    messages = list(IntegrationLog.objects.filter(action="mapping.company", tenant=tenant).order_by("id").values_list("message", flat=True))
    assert messages == [
        "Tenant “Initech” mapped to Initech LLC.",
        "Tenant “Initech” mapped to Umbrella Holdings.",
        "Tenant “Initech” unmapped.",
    ]


# Managing the link -------------------------------------------------------------------------------------------


def test_pause_resume_and_billing_only_pause(personas, linked):
    services.set_paused(linked, paused=True, billing_only=True)
    linked.refresh_from_db()
    assert (linked.paused, linked.billing_paused) == (False, True)
    services.set_paused(linked, paused=True)
    services.set_paused(linked, paused=False, billing_only=True)
    linked.refresh_from_db()
    assert (linked.paused, linked.billing_paused) == (True, False)
    services.set_paused(linked, paused=False)
    linked.refresh_from_db()
    assert (linked.paused, linked.billing_paused) == (False, False)
    messages = list(
        IntegrationLog.objects.filter(action__in=["connection.pause", "connection.resume"]).order_by("id").values_list("message", flat=True)
    )
    assert messages == ["Billing sync paused.", "The integration paused.", "Billing sync resumed.", "The integration resumed."]


def test_remove_connection_deletes_everything_and_logs_it(personas, linked, memory_psa):
    account, connection_id = personas.account_a, linked.pk
    services.import_companies(str(linked.pk), "cid")
    tenant = make_tenant(account, name="Acme Corp")
    services.map_tenant(account, tenant, "1")
    # Account B's link is untouched.
    other = Connection.objects.create(account=personas.account_b, vendor="halo")
    other_tenant = make_tenant(personas.account_b)
    CompanyMapping.objects.create(account=personas.account_b, tenant=other_tenant, company_id="77")
    earlier = IntegrationLog.objects.for_account(account).count()

    services.remove_connection(linked)

    assert not Connection.objects.for_account(account).exists()
    assert not CompanyMapping.objects.for_account(account).exists()
    assert not PsaCompany.objects.filter(connection_id=connection_id).exists()
    assert not Picklist.objects.filter(connection_id=connection_id).exists()
    assert tenant.__class__.objects.filter(pk=tenant.pk).exists()  # tenants belong to the host product
    logs = IntegrationLog.objects.for_account(account)
    assert logs.count() == earlier + 1 and not logs.filter(connection__isnull=False).exists()
    removed = logs.get(action="connection.remove")
    assert removed.connection is None
    assert removed.message == "ConnectWise Manage integration removed: credentials, tenant mappings and cached PSA data deleted."
    assert Connection.objects.filter(pk=other.pk).exists()
    assert CompanyMapping.objects.for_account(personas.account_b).count() == 1

    # A task still queued for the removed link does nothing.
    assert services.verify_connection(str(connection_id), "cid") is None
    assert services.import_companies(str(connection_id), "cid") == 0


# The shared request limiter ------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, start: float = 1_000_000.4):
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_budget_is_never_exceeded_in_any_window():
    clock = FakeClock()
    policy = RequestBudget(max_requests=10, window_seconds=60, max_concurrent=2)
    limiter = CacheLimiter(uuid.uuid4().hex, policy, max_wait=5, sleep=clock.sleep, clock=clock)
    sent: list[float] = []
    for _ in range(95):
        with limiter.acquire("all"):
            sent.append(clock.now)
        clock.now += 0.01  # each request takes a moment
    for t in sent:
        in_window = [s for s in sent if t - policy.window_seconds < s <= t]
        assert len(in_window) <= policy.max_requests, (t, in_window)
    assert sent[-1] - sent[0] < 12 * policy.window_seconds  # it waited, and it finished


def test_a_wait_longer_than_max_wait_raises_rate_limited():
    clock = FakeClock(start=3600 * 100.0)
    policy = RequestBudget(max_requests=2, window_seconds=3600, max_concurrent=3)
    limiter = CacheLimiter(uuid.uuid4().hex, policy, max_wait=30, sleep=clock.sleep, clock=clock)
    for _ in range(2):
        with limiter.acquire("all"):
            pass
    with pytest.raises(RateLimitedError) as limited:
        with limiter.acquire("all"):
            pytest.fail("the budget was exceeded")
    assert limited.value.retry_after and limited.value.retry_after > 30
    assert not limited.value.permanent
    assert clock.slept == []
    # The refused request gave its concurrency slot back.
    assert cache.get(f"{limiter.prefix}:slot:all:0") is None


def test_concurrency_slots_are_capped_and_released():
    policy = RequestBudget(max_requests=1000, window_seconds=60, max_concurrent=2)
    connection_id = uuid.uuid4().hex
    lock = threading.Lock()
    running, peak, done, errors = [0], [0], [0], []

    def work():
        try:
            with CacheLimiter(connection_id, policy, max_wait=20).acquire("all"):
                with lock:
                    running[0] += 1
                    peak[0] = max(peak[0], running[0])
                time.sleep(0.05)
                with lock:
                    running[0] -= 1
                    done[0] += 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and done[0] == 8
    assert peak[0] == 2
    # Every slot is free again.
    clock = FakeClock()
    limiter = CacheLimiter(connection_id, policy, max_wait=0, sleep=clock.sleep, clock=clock)
    with limiter.acquire("all"), limiter.acquire("all"):
        pass


def test_no_free_slot_within_max_wait_raises_rate_limited():
    clock = FakeClock()
    policy = RequestBudget(max_requests=1000, window_seconds=60, max_concurrent=1)
    limiter = CacheLimiter(uuid.uuid4().hex, policy, max_wait=2, sleep=clock.sleep, clock=clock)
    with limiter.acquire("all"):
        with pytest.raises(RateLimitedError) as limited:
            with limiter.acquire("all"):
                pytest.fail("two requests ran at once")
        assert "already running" in limited.value.message
    with limiter.acquire("all"):  # released
        pass
    # Buckets are separate (Autotask counts threads per entity).
    with limiter.acquire("Tickets"), limiter.acquire("Companies"):
        pass


@pytest.mark.django_db(transaction=True)
def test_a_request_made_while_the_connection_is_removed_is_still_logged_for_the_account(personas):
    from integrations.base.client import RequestRecord

    connection = Connection.objects.create(account=personas.account_a, vendor="halo", status=Connection.Status.CONNECTED)
    record = services.request_logger(connection, "webhook.register", "cid-removed")
    Connection.objects.filter(pk=connection.pk).delete()  # the removal, in another process, while the request ran

    record(RequestRecord("POST", "https://halo.example/auth/token", "/auth/token", 200, 12, "", "", 1))
    [row] = IntegrationLog.objects.filter(correlation_id="cid-removed")
    assert (row.account_id, row.connection_id, row.http_path) == (personas.account_a.pk, None, "/auth/token")
