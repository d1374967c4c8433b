"""billing.services against the in-memory PSA's billing lines: planning and applying tenant by
tenant, seed 004's 15 → 18 → 16, the seeds' blocked messages word for word, unmapped tenants,
transient errors retried later, guardrails, modes, revert, pause, concurrent runs of one
account, the dispatcher's schedule in the account's time zone, and auto sync."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.utils import timezone

from billing import selectors, services, tasks
from billing.models import BillingItem, BillingMapping, BillingRun, BillingSettings, Mode
from integrations import services as integration_services
from integrations.autotask.billing import DUPLICATE, EXPIRED, FUTURE_START
from integrations.base.errors import BlockedError, NotFoundError, PermissionMissingError
from integrations.connectwise.billing import MULTIPLE_AGREEMENTS
from integrations.models import CompanyMapping, Connection, IntegrationLog
from tests.factories import make_tenant
from tests.fakes import memory
from tests.fakes.memory import billing_book

pytestmark = pytest.mark.django_db

Item = BillingItem
SECRET = "mem-billing-secret-51c0"


@pytest.fixture(autouse=True)
def _psa(memory_psa, private_cache, eager_tasks):
    billing_book.reset()
    yield
    billing_book.reset()


@pytest.fixture
def account(personas):
    return personas.account_a


@pytest.fixture
def connection(account):
    connection = integration_services.save_connection(account, "connectwise", {"site": "acme.example.com"}, {"api_key": SECRET})
    Connection.objects.filter(pk=connection.pk).update(status=Connection.Status.CONNECTED)
    connection.refresh_from_db()
    return connection


@pytest.fixture
def product(account, connection):
    return services.save_product(
        account, "domains", {"name": "Domains", "psa_product_id": "701", "psa_product_name": "Palisade per domain",
                             "invoice_description": "Monitored domains"},
    )  # fmt: skip


def mapped_tenant(account, product, name, company_id, agreement_id, *, mode="", external_id=None):
    tenant = make_tenant(account, name, external_id or name.lower().replace(" ", "-"))
    CompanyMapping.objects.create(account=account, tenant=tenant, company_id=company_id, company_name=name)
    services.set_billing_mapping(account, tenant, product, {"agreement_id": agreement_id, "agreement_name": f"Agreement {agreement_id}",
                                                            "mode": mode})  # fmt: skip
    return tenant


def report(account, tenant, units, product_key="domains", as_of=None):
    return services.record_usage(account, [services.UsageReport(tenant, product_key, units, as_of)])[0]


def set_mode(account, mode, **more):
    services.update_settings(account, {"mode": mode, **more})


@pytest.fixture
def run_now(account, django_capture_on_commit_callbacks):
    """run_now(apply=True, tenants=None) -> the run, executed by the eager task (and its retries)."""

    def run(apply=True, tenants=None, trigger=BillingRun.Trigger.MANUAL):
        with django_capture_on_commit_callbacks(execute=True):
            created = services.start_run(account, trigger=trigger, apply=apply, tenants=tenants, label="alice@acme.example")
        created.refresh_from_db()
        return created

    return run


@pytest.fixture
def approve(django_capture_on_commit_callbacks):
    def do(run, tenants=None, by="olga@acme.example"):
        with django_capture_on_commit_callbacks(execute=True):
            count = services.approve_run(run, by=by, tenants=tenants)
        run.refresh_from_db()
        return count

    return do


def item_of(run, tenant, product_key="domains") -> BillingItem:
    return BillingItem.objects.get(run=run, tenant=tenant, product_key=product_key)


# Seed 004: agreement additions 15 → 18 → 16 ------------------------------------------------------------


def test_seed_004_fifteen_to_eighteen_to_sixteen_as_absolute_quantities(account, product, run_now):
    set_mode(account, Mode.AUTOMATIC)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    billing_book.set("250", "3001", "701", 15)

    report(account, acme, 18)
    first = run_now()
    report(account, acme, 16)
    second = run_now()

    assert billing_book.quantity("250", "3001", "701") == 16
    # Absolute quantities, one write each: never a delta, never a second line.
    assert billing_book.writes == [(("250", "3001", "701"), 15, 18), (("250", "3001", "701"), 18, 16)]
    assert len(billing_book.lines) == 1
    for run, before, after in ((first, 15, 18), (second, 18, 16)):
        assert run.state == BillingRun.State.DONE, run.message
        item = item_of(run, acme)
        assert (item.action, item.state, item.before_quantity, item.after_quantity) == ("update", "applied", before, after)
        assert item.current_quantity == before and item.new_quantity == after and item.usage_units == after
        assert item.approved_by == services.AUTOMATIC and item.applied_at is not None
        assert item.mapping_snapshot["target"]["agreement_id"] == "3001"
        assert item.mapping_snapshot["target"]["description"] == "Monitored domains"
        assert run.counts["updated"] == 1
    writes = IntegrationLog.objects.for_account(account).filter(action="billing.write").order_by("created_at", "id")
    assert [(w.tenant_id, w.subject) for w in writes] == [(acme.pk, f"billing_run:{first.pk}"), (acme.pk, f"billing_run:{second.pk}")]
    assert "15 → 18" in writes[0].message and "manual by alice@acme.example" in writes[0].message
    assert "usage 18" in writes[0].message
    # The chart's history: oldest first.
    assert [(i.before_quantity, i.after_quantity) for i in selectors.quantity_history(account, acme)] == [(15, 18), (18, 16)]


def test_a_missing_line_is_created_with_the_invoice_description(account, product, run_now):
    set_mode(account, Mode.AUTOMATIC)
    globex = mapped_tenant(account, product, "Globex", "251", "3003")
    report(account, globex, 7)

    run = run_now()

    item = item_of(run, globex)
    assert (item.action, item.state, item.before_quantity, item.after_quantity) == ("create", "applied", 0, 7)
    assert billing_book.quantity("251", "3003", "701") == 7
    assert run.counts["created"] == 1


def test_unchanged_lines_are_read_once_and_never_written(account, product, run_now):
    set_mode(account, Mode.AUTOMATIC)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    billing_book.set("250", "3001", "701", 15)
    report(account, acme, 15)

    run = run_now()

    item = item_of(run, acme)
    assert (item.action, item.state, item.reason) == ("none", "skipped", "Unchanged: already 15 in the PSA.")
    assert billing_book.writes == [] and billing_book.reads == [("250", "3001", "701")]
    assert len(billing_book.prefetches) == 1, "the plan offers the adapter its targets to prefetch"
    assert run.counts["unchanged"] == 1


# Applying twice writes nothing ----------------------------------------------------------------------


def test_applying_a_plan_twice_writes_nothing_the_second_time(account, product, run_now, approve):
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    billing_book.set("250", "3001", "701", 15)
    report(account, acme, 18)
    run = run_now()  # approve mode (the default): a plan waiting for approval
    assert run.state == BillingRun.State.PLANNED and billing_book.writes == []
    assert item_of(run, acme).reason == "Update 15 → 18 (waiting for approval)."

    assert approve(run) == 1
    assert run.state == BillingRun.State.DONE and len(billing_book.writes) == 1

    with pytest.raises(services.BillingRefused, match="no lines waiting for approval"):
        approve(run)
    # The task delivered again (a redelivery) does nothing either.
    assert services.execute_run(run.pk, "redelivered") == BillingRun.State.DONE
    # A run whose item is approved again (as after a crash) re-reads the line and finds it done.
    BillingItem.objects.filter(run=run).update(state=Item.State.APPROVED)
    services.execute_run(run.pk, "crash-recovery")
    assert len(billing_book.writes) == 1
    assert item_of(run, acme).reason == "Already 18 in the PSA: nothing written."
    # And a new sync plans nothing.
    assert item_of(run_now(), acme).action == "none"
    assert len(billing_book.writes) == 1


def test_the_line_is_read_again_right_before_writing(account, product, run_now, approve):
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    billing_book.set("250", "3001", "701", 15)
    report(account, acme, 18)
    run = run_now()

    billing_book.set("250", "3001", "701", 17)  # someone changed it in the PSA meanwhile
    approve(run)

    item = item_of(run, acme)
    assert (item.before_quantity, item.after_quantity) == (17, 18)
    assert billing_book.writes == [(("250", "3001", "701"), 17, 18)]


# The seeds' blocked tenants, word for word; the others go on -----------------------------------------


def test_blocked_tenants_fail_with_the_adapter_message_and_the_others_continue(account, product, run_now):
    set_mode(account, Mode.AUTOMATIC)
    two = mapped_tenant(account, product, "Two Agreements Ltd", "254", "3004")
    future = mapped_tenant(account, product, "Globex", "2", "101")
    expired = mapped_tenant(account, product, "Initech", "3", "102")
    duplicate = mapped_tenant(account, product, "Umbrella", "4", "103")
    cancelled = mapped_tenant(account, product, "Cancelled Agreement Co", "255", "3006")
    fine = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    future_message = FUTURE_START.format(name="Globex Go-Live Contract", start="2031-02-01")
    expired_message = EXPIRED.format(name="Initech 2023 Contract", end="2024-11-30")
    duplicate_message = DUPLICATE.format(count=2)
    cancelled_message = "The mapped agreement “Old Contract” was cancelled in ConnectWise on 2025-01-31. Map this tenant to an active agreement."
    billing_book.blocked = {
        ("254", "3004", "701"): BlockedError(MULTIPLE_AGREEMENTS),
        ("2", "101", "701"): BlockedError(future_message),
        ("3", "102", "701"): BlockedError(expired_message),
        ("4", "103", "701"): BlockedError(duplicate_message),
        ("255", "3006", "701"): NotFoundError(cancelled_message),
    }
    for tenant in (two, future, expired, duplicate, cancelled, fine):
        report(account, tenant, 9)

    run = run_now()

    assert run.state == BillingRun.State.DONE
    expected = {two: MULTIPLE_AGREEMENTS, future: future_message, expired: expired_message,
                duplicate: duplicate_message, cancelled: cancelled_message}  # fmt: skip
    for tenant, message in expected.items():
        item = item_of(run, tenant)
        assert (item.action, item.state, item.error, item.reason) == ("blocked", "failed", message, message)
        assert not item.retryable
        logged = IntegrationLog.objects.for_account(account).get(tenant=tenant, action="billing.sync")
        assert logged.outcome == "error" and message in logged.message and logged.subject == run.subject
    assert item_of(run, fine).state == "applied" and billing_book.quantity("250", "3001", "701") == 9
    assert run.counts["failed"] == 5 and run.counts["blocked"] == 5 and run.counts["created"] == 1
    assert run.message == "1 created, 5 blocked.", "each line counted once (blocked ones are not also “failed”)"


def test_a_missing_permission_names_the_modules(account, product, run_now):
    set_mode(account, Mode.AUTOMATIC)
    acme = mapped_tenant(account, product, "Acme Corp", "1", "100")
    message = ("Autotask answered 401 Unauthorized to a billing request. Verify the security level grants access to both "
               "modules (Contracts and Services).")  # fmt: skip
    billing_book.blocked[("1", "100", "701")] = PermissionMissingError(message, which="Contracts and Services")
    report(account, acme, 3)

    item = item_of(run_now(), acme)

    assert (item.action, item.state, item.error) == ("blocked", "failed", message)


def test_refused_credentials_stop_the_run_instead_of_trying_every_tenant(account, product, run_now, memory_psa):
    set_mode(account, Mode.AUTOMATIC)
    tenants = [mapped_tenant(account, product, f"Customer {n}", str(n), f"30{n}") for n in range(1, 5)]
    for tenant in tenants:
        report(account, tenant, 5)
    memory_psa.mode = "auth_failed"

    run = run_now()

    attempts = memory_psa.called("billing_prefetch") + memory_psa.called("billing_read")
    assert len(attempts) == 1, "Autotask locks a user after repeated refused logins"
    assert run.state == BillingRun.State.FAILED
    assert run.message.startswith("Stopped: Authentication failed: re-check the Site and the API key.")
    items = [item_of(run, t) for t in tenants]
    assert all(i.state == "failed" and i.error.startswith("Authentication failed") and not i.retryable for i in items)
    failure = IntegrationLog.objects.for_account(account).get(action="billing.run", outcome="error", error_kind="auth_failed")
    assert failure.message.startswith("Authentication failed")


def test_an_unexpected_exception_gives_a_reference_and_never_its_text(account, product, run_now, memory_psa):
    set_mode(account, Mode.AUTOMATIC)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    report(account, acme, 5)
    memory_psa.mode = "crash"

    item = item_of(run_now(), acme)

    assert item.state == "failed" and "Something went wrong in the hub (reference" in item.error
    assert SECRET not in item.error
    assert SECRET not in "".join(IntegrationLog.objects.values_list("message", flat=True))


# Unmapped tenants are listed, never silently skipped ---------------------------------------------------


def test_unmapped_tenants_are_listed_as_unmapped(account, product, connection, run_now):
    mapped = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    report(account, mapped, 4)
    usage_only = make_tenant(account, "Usage Only", "usage-only")
    report(account, usage_only, 6)
    make_tenant(account, "Nothing Yet", "nothing")
    no_company = make_tenant(account, "No Company", "no-company")
    services.set_billing_mapping(account, no_company, product, {"agreement_id": "3009"})
    report(account, no_company, 1)
    no_agreement = make_tenant(account, "No Agreement", "no-agreement")
    CompanyMapping.objects.create(account=account, tenant=no_agreement, company_id="252")
    services.set_billing_mapping(account, no_agreement, product, {})
    report(account, no_agreement, 2)
    mapped_tenant(account, product, "No Usage", "253", "3009")
    make_tenant(account, "Gone", "gone", is_active=False)

    run = run_now(apply=False)

    reasons = {i.tenant.external_id: (i.action, i.product_key, i.reason) for i in BillingItem.objects.filter(run=run)}
    assert reasons == {
        "acme-dental": ("create", "domains", "Create with 0 → 4 (preview)."),
        "usage-only": ("unmapped", "domains", "Usage is reported for Domains, but this tenant is not mapped for billing: choose the ConnectWise agreement."),
        "nothing": ("unmapped", "", "No billing mapping and no usage reported for this tenant."),
        "no-company": ("unmapped", "domains", "The tenant is not mapped to a PSA company: map it under Integrations › Map tenants."),
        "no-agreement": ("unmapped", "domains", "Choose the ConnectWise agreement for this tenant's Domains."),
        "no-usage": ("none", "domains", "No usage reported yet for Domains: nothing to write."),
    }
    assert run.counts["unmapped"] == 4 and run.counts["no_usage"] == 1 and run.counts["awaiting_approval"] == 1
    assert billing_book.reads == [("250", "3001", "701")], "only mapped tenants with usage are read"


def test_a_product_without_a_psa_product_or_of_another_vendor_is_unmapped(account, connection, run_now):
    bare = services.save_product(account, "users", {"name": "Users"})
    tenant = make_tenant(account, "Acme", "acme")
    CompanyMapping.objects.create(account=account, tenant=tenant, company_id="250")
    services.set_billing_mapping(account, tenant, bare, {"agreement_id": "3001"})
    report(account, tenant, 3, "users")
    other = services.save_product(account, "gb", {"psa_product_id": "9"})
    other.vendor = "halo"
    other.save()
    services.set_billing_mapping(account, tenant, other, {"agreement_id": "3001"})
    report(account, tenant, 3, "gb")

    run = run_now()

    assert item_of(run, tenant, "users").reason == "Product “Users” is not mapped to a ConnectWise catalog item yet."
    assert item_of(run, tenant, "gb").reason == "Product “gb” is mapped to a Halo item; map it to a ConnectWise catalog item."


# Transient PSA errors: that tenant is retried later, the run completes ---------------------------------


def test_a_psa_500_in_the_middle_of_a_run_is_retried_later_for_that_tenant(account, product, run_now, monkeypatch):
    set_mode(account, Mode.AUTOMATIC)
    first = mapped_tenant(account, product, "A First", "1", "31")
    flaky = mapped_tenant(account, product, "B Flaky", "2", "32")
    last = mapped_tenant(account, product, "C Last", "3", "33")
    for tenant in (first, flaky, last):
        report(account, tenant, 8)
    billing_book.read_failures[("2", "32", "701")] = 1
    queued = []
    original = tasks.execute_run.apply_async

    def hold_back_retries(args, countdown=None, **kwargs):
        if countdown:
            queued.append((tuple(args), countdown))
            return None
        return original(args, countdown=countdown, **kwargs)

    monkeypatch.setattr(tasks.execute_run, "apply_async", hold_back_retries)
    run = run_now()
    tasks.execute_run.apply_async = original  # (monkeypatch restores it again at the end)

    assert run.state == BillingRun.State.DONE, "the run completes"
    assert item_of(run, first).state == "applied" and item_of(run, last).state == "applied"
    waiting = item_of(run, flaky)
    assert (waiting.action, waiting.state, waiting.retryable, waiting.attempts) == ("error", "failed", True, 1)
    assert waiting.error.startswith("Memory PSA answered 500") and "tries this tenant again in 1 minute" in waiting.error
    assert run.counts["retrying"] == 1
    assert queued == [((run.pk, True), pytest.approx(60, abs=2))], "the retry is queued with its backoff"

    tasks.execute_run.delay(run.pk, True)  # the retry, when its countdown is over

    waiting.refresh_from_db()
    assert (waiting.action, waiting.state, waiting.after_quantity, waiting.retryable) == ("create", "applied", 8, False)
    assert billing_book.quantity("2", "32", "701") == 8
    run.refresh_from_db()
    assert run.state == BillingRun.State.DONE and run.counts["retrying"] == 0 and run.counts["created"] == 3


def test_a_tenant_that_keeps_failing_is_given_up_on_after_a_few_attempts(account, product, run_now):
    set_mode(account, Mode.AUTOMATIC)
    flaky = mapped_tenant(account, product, "Flaky", "2", "32")
    report(account, flaky, 8)
    billing_book.read_failures[("2", "32", "701")] = 99

    run = run_now()  # eager: the retries run at once, one after the other

    item = item_of(run, flaky)
    assert item.attempts == services.MAX_ATTEMPTS and not item.retryable and item.state == "failed"
    assert item.error.endswith(f"(gave up after {services.MAX_ATTEMPTS} attempts)")
    assert billing_book.writes == []


def test_a_write_whose_answer_is_lost_is_read_again_before_it_is_sent_again(account, product, run_now):
    set_mode(account, Mode.AUTOMATIC)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    billing_book.set("250", "3001", "701", 15)
    report(account, acme, 18)
    billing_book.write_failures[("250", "3001", "701")] = 1

    run = run_now()

    item = item_of(run, acme)
    assert (item.state, item.before_quantity, item.after_quantity) == ("applied", 15, 18)
    assert billing_book.writes == [(("250", "3001", "701"), 15, 18)]
    assert item.attempts == 1


# Guardrails ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "new", "held_because"),
    [
        (10, 16, "Held for approval: a change of 60% (10 → 16) is more than the 50% limit."),
        (10, 0, "Held for approval: a drop to zero (from 10)."),
        (300, 420, "Held for approval: a change of 120 units (300 → 420) is more than the 100-unit limit."),
        (0, 150, "Held for approval: a change of 150 units (0 → 150) is more than the 100-unit limit."),
        (15, 18, ""),
        (0, 40, ""),
        (300, 399, ""),
    ],
)
def test_guardrails_hold_large_changes_and_drops_to_zero_in_automatic_mode(account, product, run_now, approve, current, new, held_because):
    set_mode(account, Mode.AUTOMATIC)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    if current:
        billing_book.set("250", "3001", "701", current)
    report(account, acme, new)

    run = run_now()
    item = item_of(run, acme)

    if not held_because:
        assert item.state == "applied" and billing_book.quantity("250", "3001", "701") == new
        return
    assert (item.action, item.state, item.reason) == ("held", "planned", held_because)
    assert run.state == BillingRun.State.PLANNED and run.counts["held"] == 1 and billing_book.writes == []
    approve(run)
    item.refresh_from_db()
    assert (item.state, item.after_quantity, item.approved_by) == ("applied", new, "olga@acme.example")


def test_guardrail_limits_are_settings(account, product, run_now):
    set_mode(account, Mode.AUTOMATIC, max_change_percent=10, max_change_units=2)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    billing_book.set("250", "3001", "701", 15)
    report(account, acme, 18)

    item = item_of(run_now(), acme)

    assert item.reason == "Held for approval: a change of 3 units (15 → 18) is more than the 2-unit limit."


# Modes -----------------------------------------------------------------------------------------------------


def test_monitor_mode_plans_and_writes_nothing(account, product, run_now):
    set_mode(account, Mode.MONITOR)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    billing_book.set("250", "3001", "701", 15)
    report(account, acme, 18)

    run = run_now()

    item = item_of(run, acme)
    assert (item.action, item.state, item.reason) == ("update", "skipped", "Monitor only: would update 15 → 18; nothing is written.")
    assert run.state == BillingRun.State.DONE and run.counts["monitor"] == 1 and billing_book.writes == []
    with pytest.raises(services.BillingRefused):
        services.approve_run(run, by="olga")


def test_approve_mode_whole_run_or_per_tenant(account, product, run_now, approve):
    set_mode(account, Mode.APPROVE)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    globex = mapped_tenant(account, product, "Globex", "251", "3003")
    report(account, acme, 5)
    report(account, globex, 6)

    run = run_now()
    assert run.state == BillingRun.State.PLANNED and run.counts["awaiting_approval"] == 2

    assert approve(run, tenants=[globex]) == 1
    assert billing_book.quantity("251", "3003", "701") == 6 and billing_book.quantity("250", "3001", "701") is None
    assert run.state == BillingRun.State.PLANNED and run.counts["awaiting_approval"] == 1
    assert "1 line(s) wait for approval" in run.message

    assert approve(run) == 1
    assert billing_book.quantity("250", "3001", "701") == 5 and run.state == BillingRun.State.DONE
    assert item_of(run, acme).approved_by == "olga@acme.example"


def test_a_tenant_mode_overrides_the_account_mode(account, product, run_now):
    set_mode(account, Mode.AUTOMATIC)
    watched = mapped_tenant(account, product, "Watched", "1", "31", mode=Mode.MONITOR)
    careful = mapped_tenant(account, product, "Careful", "2", "32", mode=Mode.APPROVE)
    trusted = mapped_tenant(account, product, "Trusted", "3", "33")
    for tenant in (watched, careful, trusted):
        report(account, tenant, 4)

    run = run_now()

    assert [(item_of(run, t).mode, item_of(run, t).state) for t in (watched, careful, trusted)] == [
        ("monitor", "skipped"), ("approve", "planned"), ("automatic", "applied"),
    ]  # fmt: skip
    assert [key for key, _, _ in billing_book.writes] == [("3", "33", "701")]


def test_a_preview_writes_nothing_even_in_automatic_mode_and_approving_it_applies_it(account, product, run_now, approve):
    set_mode(account, Mode.AUTOMATIC)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    billing_book.set("250", "3001", "701", 15)
    report(account, acme, 18)

    preview = run_now(apply=False)

    assert preview.state == BillingRun.State.PLANNED and billing_book.writes == []
    assert item_of(preview, acme).reason == "Update 15 → 18 (preview)."
    assert preview.message == "Preview: 1 waiting for approval. Approve the plan to write it."
    approve(preview)
    assert billing_book.quantity("250", "3001", "701") == 18


# Revert ------------------------------------------------------------------------------------------------------


def test_revert_writes_back_the_previous_quantities_as_a_run_of_its_own(account, product, run_now, django_capture_on_commit_callbacks):
    set_mode(account, Mode.AUTOMATIC)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    globex = mapped_tenant(account, product, "Globex", "251", "3003")
    same = mapped_tenant(account, product, "Same", "252", "3008")
    billing_book.set("250", "3001", "701", 15)
    billing_book.set("252", "3008", "701", 4)
    report(account, acme, 18)
    report(account, globex, 7)
    report(account, same, 4)
    sync = run_now()
    assert sync.counts == {**sync.counts, "updated": 1, "created": 1, "unchanged": 1}

    with django_capture_on_commit_callbacks(execute=True):
        revert = services.revert_run(sync, by="alice@acme.example")
    revert.refresh_from_db()

    assert (revert.trigger, revert.reverts_id, revert.state) == ("revert", sync.pk, BillingRun.State.DONE)
    assert billing_book.quantity("250", "3001", "701") == 15 and billing_book.quantity("251", "3003", "701") == 0
    assert billing_book.quantity("252", "3008", "701") == 4
    lines = {i.tenant_id: (i.before_quantity, i.after_quantity, i.reason) for i in BillingItem.objects.filter(run=revert)}
    assert lines == {
        acme.pk: (18, 15, f"Revert run #{sync.pk}: update 18 → 15."),
        globex.pk: (7, 0, f"Revert run #{sync.pk}: update 7 → 0."),
    }
    logged = IntegrationLog.objects.for_account(account).filter(action="billing.write", subject=revert.subject)
    assert logged.count() == 2 and all(f"revert of run #{sync.pk}" in entry.message for entry in logged)

    with pytest.raises(services.BillingRefused, match="nothing to revert"):
        services.revert_run(run_now(apply=False), by="alice")  # a run that changed nothing


# Pause ---------------------------------------------------------------------------------------------------------


def test_pause_billing_or_the_integration_refuses_runs_with_a_clear_message(account, product, connection, run_now):
    integration_services.set_paused(connection, paused=True, billing_only=True)
    with pytest.raises(services.BillingRefused) as caught:
        run_now()
    assert caught.value.message.startswith("Billing is paused.")
    assert caught.value.code == "paused"

    connection.refresh_from_db()
    integration_services.set_paused(connection, paused=False, billing_only=True)
    integration_services.set_paused(connection, paused=True)
    with pytest.raises(services.BillingRefused, match="The integration is paused, so billing sync is halted"):
        run_now()
    assert not BillingRun.objects.exists()


def test_pausing_after_planning_stops_the_writes(account, product, connection, run_now, django_capture_on_commit_callbacks):
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    report(account, acme, 5)
    run = run_now()
    with django_capture_on_commit_callbacks(execute=False):  # approved, task not run yet
        services.approve_run(run, by="olga")
    integration_services.set_paused(connection, paused=True, billing_only=True)

    services.execute_run(run.pk, "task-1")

    run.refresh_from_db()
    assert billing_book.writes == [] and run.state == BillingRun.State.PLANNED
    assert run.message.startswith("Not written: Billing is paused.")
    assert item_of(run, acme).state == "planned"
    with pytest.raises(services.BillingRefused, match="Billing is paused"):
        services.approve_run(run, by="olga")


def test_a_scheduled_run_while_paused_is_skipped_and_logged(account, product, connection):
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    report(account, acme, 5)
    integration_services.set_paused(connection, paused=True, billing_only=True)
    settings_row = services.get_settings(account)

    services.dispatch_due(now=settings_row.next_run_at + timedelta(seconds=30))

    assert not BillingRun.objects.exists()
    skipped = IntegrationLog.objects.for_account(account).get(action="billing.run")
    assert skipped.outcome == "skipped" and skipped.message.startswith("Scheduled billing sync skipped: Billing is paused.")


def test_an_auto_sync_while_paused_is_skipped_and_logged(account, product, connection):
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    services.update_settings(account, {"auto_sync": True})
    report(account, acme, 5)
    integration_services.set_paused(connection, paused=True)

    due = BillingSettings.objects.get(account=account).auto_sync_due_at
    assert services.dispatch_auto_sync(account.pk, now=due + timedelta(seconds=1)) is None

    assert not BillingRun.objects.exists()
    skipped = IntegrationLog.objects.for_account(account).get(action="billing.run")
    assert skipped.outcome == "skipped" and skipped.message.startswith("Auto sync skipped: The integration is paused")


# Two syncs of one account at once ------------------------------------------------------------------------


def test_a_second_run_of_the_account_waits_while_the_first_writes(account, product, run_now, django_capture_on_commit_callbacks):
    set_mode(account, Mode.AUTOMATIC)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    globex = mapped_tenant(account, product, "Globex", "251", "3003")
    report(account, acme, 5)
    report(account, globex, 6)
    with django_capture_on_commit_callbacks(execute=False):
        second = services.start_run(account, trigger=BillingRun.Trigger.API, apply=True, label="API key")
    seen = []

    def during_first_write(key, quantity):
        if not seen:
            with pytest.raises(services.AccountBusy) as caught:
                services.execute_run(second.pk, "second-task")
            seen.append((caught.value.run_id, len(billing_book.writes)))

    billing_book.on_write = during_first_write
    first = run_now()

    assert seen == [(first.pk, 0)], "the second run found the account claimed by the first and wrote nothing"
    second.refresh_from_db()
    assert second.state == BillingRun.State.WAITING and second.message == f"Waiting for billing run #{first.pk} of this account to finish."
    assert BillingItem.objects.filter(run=second).count() == 0
    billing_book.on_write = None

    services.execute_run(second.pk, "second-task")  # the task's retry, once the first is done

    second.refresh_from_db()
    assert second.state == BillingRun.State.DONE and second.counts["unchanged"] == 2
    assert len(billing_book.writes) == 2
    assert BillingSettings.objects.get(account=account).run_claim == ""


def test_a_run_that_waits_too_long_is_skipped_and_says_so(account, product, run_now, monkeypatch):
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    report(account, acme, 5)
    settings_row = services.get_settings(account)
    holder = BillingRun.objects.create(account=account, trigger="schedule", state=BillingRun.State.APPLYING)
    BillingSettings.objects.filter(pk=settings_row.pk).update(run_claim="other-worker", run_claimed_at=timezone.now(), running_run=holder)
    monkeypatch.setattr(tasks.execute_run, "max_retries", 2)

    run = run_now()

    assert run.state == BillingRun.State.SKIPPED
    assert run.message == (f"Skipped: billing run #{holder.pk} of this account was still running; two syncs of one account "
                           "never run at once.")  # fmt: skip
    assert billing_book.reads == []


def test_a_claim_whose_worker_died_is_taken_over_after_the_lease(account, product, run_now):
    set_mode(account, Mode.AUTOMATIC)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    report(account, acme, 5)
    settings_row = services.get_settings(account)
    BillingSettings.objects.filter(pk=settings_row.pk).update(
        run_claim="dead-worker", run_claimed_at=timezone.now() - services.CLAIM_LEASE - timedelta(seconds=1)
    )

    assert run_now().state == BillingRun.State.DONE
    assert billing_book.quantity("250", "3001", "701") == 5


# The dispatcher: schedule in the account's time zone, monthly, auto sync ---------------------------------


def test_the_daily_run_is_due_at_the_time_of_day_in_the_account_time_zone(account, product, django_capture_on_commit_callbacks):
    account.time_zone = "America/New_York"
    account.save()
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    report(account, acme, 5)
    with time_machine.travel(datetime(2026, 1, 15, 12, 0, tzinfo=UTC), tick=False):
        services.update_settings(account, {"time_of_day": time(2, 0)})
    settings_row = BillingSettings.objects.get(account=account)
    assert settings_row.next_run_at == datetime(2026, 1, 16, 7, 0, tzinfo=UTC)  # 02:00 EST

    with time_machine.travel(datetime(2026, 1, 16, 6, 59, tzinfo=UTC), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert services.dispatch_due() == 0
    with time_machine.travel(datetime(2026, 1, 16, 7, 0, 30, tzinfo=UTC), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert services.dispatch_due() == 1
            assert services.dispatch_due() == 0, "one run per due time, however often the beat ticks"
    run = BillingRun.objects.get()
    assert (run.trigger, run.apply, run.requested_by_label) == ("schedule", True, "schedule")
    assert run.state == BillingRun.State.PLANNED  # approve mode: the plan waits for an operator
    settings_row.refresh_from_db()
    assert settings_row.next_run_at == datetime(2026, 1, 17, 7, 0, tzinfo=UTC)
    # In summer New York is on EDT: 02:00 is 06:00 UTC.
    settings_row.account.refresh_from_db()
    assert services.next_run_after(settings_row, datetime(2026, 7, 1, 12, 0, tzinfo=UTC)) == datetime(2026, 7, 2, 6, 0, tzinfo=UTC)


def test_a_monthly_run_on_a_day_of_the_month(account, product):
    account.time_zone = "Europe/Amsterdam"
    account.save()
    with time_machine.travel(datetime(2026, 3, 20, 9, 0, tzinfo=UTC), tick=False):
        services.update_settings(account, {"schedule": "monthly", "day_of_month": 3, "time_of_day": time(1, 30)})
    settings_row = BillingSettings.objects.get(account=account)
    assert settings_row.next_run_at == datetime(2026, 4, 2, 23, 30, tzinfo=UTC)  # 01:30 CEST on 3 April
    assert services.next_run_after(settings_row, settings_row.next_run_at) == datetime(2026, 5, 2, 23, 30, tzinfo=UTC)

    services.update_settings(account, {"schedule": "off"})
    assert BillingSettings.objects.get(account=account).next_run_at is None


def test_no_scheduled_run_for_an_account_with_nothing_mapped(account, connection):
    settings_row = services.get_settings(account)
    services.dispatch_due(now=settings_row.next_run_at + timedelta(seconds=1))
    assert not BillingRun.objects.exists()


def test_auto_sync_syncs_the_changed_tenant_after_the_delay(account, product, django_capture_on_commit_callbacks, monkeypatch):
    set_mode(account, Mode.AUTOMATIC)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    quiet = mapped_tenant(account, product, "Quiet", "251", "3003")
    billing_book.set("250", "3001", "701", 15)
    start = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        report(account, quiet, 2)  # before auto sync was on: for the scheduled run
        services.update_settings(account, {"auto_sync": True, "auto_sync_delay_minutes": 5})
    queued = []
    monkeypatch.setattr(tasks.auto_sync, "apply_async", lambda args, countdown=None, **kw: queued.append((args, countdown)))
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            report(account, acme, 18)
            assert queued == [], "usage is committed before anything is queued"
        assert len(callbacks) == 1 and queued == [((account.pk,), 300)]
    with time_machine.travel(start + timedelta(minutes=3), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            report(account, acme, 19)  # joins the sync already due
        assert len(queued) == 1
        assert services.dispatch_auto_sync(account.pk) is None, "not before the delay"
    with time_machine.travel(start + timedelta(minutes=6, seconds=5), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert services.dispatch_due() == 1
    run = BillingRun.objects.get()
    assert (run.trigger, run.requested_by_label, run.tenant_ids) == ("auto", "auto sync", [acme.pk])
    assert billing_book.quantity("250", "3001", "701") == 19 and billing_book.quantity("251", "3003", "701") is None
    assert BillingSettings.objects.get(account=account).auto_sync_due_at is None


def test_auto_sync_off_queues_nothing(account, product, django_capture_on_commit_callbacks):
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    with django_capture_on_commit_callbacks() as callbacks:
        report(account, acme, 18)
    assert callbacks == []


def test_a_run_that_stopped_moving_is_queued_again(account, product, connection, monkeypatch, django_capture_on_commit_callbacks):
    stuck = BillingRun.objects.create(account=account, trigger="manual", state=BillingRun.State.QUEUED, apply=True)
    moving = BillingRun.objects.create(account=account, trigger="manual", state=BillingRun.State.PLANNING, apply=True)
    BillingRun.objects.filter(pk=stuck.pk).update(updated_at=timezone.now() - services.STALE_AFTER - timedelta(minutes=1))
    sent = []
    monkeypatch.setattr(tasks.execute_run, "delay", lambda *args: sent.append(args))

    with django_capture_on_commit_callbacks(execute=True):
        services.dispatch_due()

    assert sent == [(stuck.pk, False)] and moving.pk not in [args[0] for args in sent]


# Usage -----------------------------------------------------------------------------------------------------


def test_usage_history_keeps_changes_and_refreshes_repeats(account, product):
    acme = make_tenant(account, "Acme", "acme")
    first = report(account, acme, 15)
    again = report(account, acme, 15)
    changed = report(account, acme, 18)
    late = report(account, acme, 12, as_of=timezone.now() - timedelta(days=3))

    assert first.changed and not again.changed and changed.changed and not late.changed
    assert again.usage.pk == first.usage.pk
    assert [u.units for u in selectors.usage_history(account, acme, "domains")] == [18, 15, 12]
    assert selectors.latest_usage(account)[(acme.pk, "domains")].units == 18
    with pytest.raises(ValueError):
        report(account, acme, -1)


def test_runs_and_mappings_of_another_account_are_not_seen(personas, account, product, run_now):
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    report(account, acme, 5)
    run_now()
    other = personas.account_b
    assert not selectors.runs(other).exists()
    assert not BillingMapping.objects.for_account(other).exists()
    assert selectors.latest_usage(other) == {}
    assert memory.state.secrets_seen  # the provider was built through load_credentials


def test_what_the_billing_page_reads(account, product, run_now):
    set_mode(account, Mode.AUTOMATIC)
    acme = mapped_tenant(account, product, "Acme Dental", "250", "3001")
    bare = make_tenant(account, "Bare", "bare")
    billing_book.set("250", "3001", "701", 15)
    report(account, acme, 18)
    run = run_now()

    rows = {row.tenant.external_id: row for row in selectors.tenant_rows(account, [acme, bare])}
    [acme_row] = rows["acme-dental"].products
    assert acme_row.mapping.agreement_id == "3001" and acme_row.usage.units == 18
    assert (acme_row.last_item.run_id, acme_row.last_item.after_quantity) == (run.pk, 18)
    assert rows["acme-dental"].mapped and not rows["bare"].mapped
    assert rows["bare"].products[0].mapping is None and rows["bare"].products[0].last_item is None
    assert selectors.active_run(account) is None and selectors.settings_of(account).last_run_id == run.pk
    assert [i.tenant_id for i in selectors.run_items(run, state="applied")] == [acme.pk]
    assert run.progress_percent == 100 and run.subject == f"billing_run:{run.pk}"
