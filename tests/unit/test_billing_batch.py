"""The billing engine with an adapter that writes many lines per request (write_batch > 1, as
Halo's does): every line is read again right before, the ones that differ are handed over
together, and each line's outcome is recorded on its own — a failed line, an equal line and the
written ones side by side."""

from __future__ import annotations

import pytest

from billing import services
from billing.models import BillingItem, BillingRun, Mode
from integrations import services as integration_services
from integrations.base.errors import AuthFailedError, InvalidError
from integrations.models import CompanyMapping, Connection
from tests.factories import make_tenant
from tests.fakes.memory import MemoryBilling, billing_book

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _psa(memory_psa, private_cache, eager_tasks, monkeypatch):
    billing_book.reset()
    batches: list[int] = []
    original = MemoryBilling.write_quantities

    def write_quantities(self, writes):
        batches.append(len(writes))
        return original(self, writes)

    monkeypatch.setattr(MemoryBilling, "write_batch", 2, raising=False)
    monkeypatch.setattr(MemoryBilling, "write_quantities", write_quantities)
    yield batches
    billing_book.reset()


@pytest.fixture
def account(personas):
    account = personas.account_a
    connection = integration_services.save_connection(account, "halo", {"site": "acme.example.com"}, {"api_key": "k"})
    Connection.objects.filter(pk=connection.pk).update(status=Connection.Status.CONNECTED)
    services.update_settings(account, {"mode": Mode.AUTOMATIC})
    return account


def tenants(account, rows):
    product = services.save_product(account, "users", {"psa_product_id": "1"})
    made = {}
    for name, company_id, units in rows:
        tenant = make_tenant(account, name, name.lower())
        CompanyMapping.objects.create(account=account, tenant=tenant, company_id=company_id, company_name=name)
        services.set_billing_mapping(account, tenant, product, {})
        services.record_usage(account, [services.UsageReport(tenant, "users", units)])
        made[name] = tenant
    return made


def sync(account, django_capture_on_commit_callbacks) -> BillingRun:
    with django_capture_on_commit_callbacks(execute=True):
        run = services.start_run(account, trigger=BillingRun.Trigger.MANUAL, apply=True, label="alice@acme.example")
    run.refresh_from_db()
    return run


def test_lines_are_written_in_batches_each_with_its_own_outcome(account, _psa, django_capture_on_commit_callbacks):
    tenants(account, [("Acme", "1", 12), ("Bravo", "2", 5), ("Charlie", "3", 7), ("Delta", "4", 9), ("Echo", "5", 3)])
    billing_book.set("1", "", "1", 10)
    billing_book.set("4", "", "1", 9)  # already equal: unchanged in the plan, not in the writing phase
    billing_book.write_errors[("3", "", "1")] = InvalidError("Halo refused the licence: count is not valid.", field="count")

    run = sync(account, django_capture_on_commit_callbacks)

    assert run.state == BillingRun.State.DONE, run.message
    assert _psa == [2, 2], "Acme+Bravo, then Charlie+Echo"
    outcome = {i.tenant.name: (i.state, i.before_quantity, i.after_quantity, i.error)
               for i in BillingItem.objects.filter(run=run).select_related("tenant")}  # fmt: skip
    assert outcome == {
        "Acme": ("applied", 10, 12, ""), "Bravo": ("applied", 0, 5, ""),
        "Charlie": ("failed", 0, None, "Halo refused the licence: count is not valid."),
        "Delta": ("skipped", None, None, ""), "Echo": ("applied", 0, 3, ""),
    }  # fmt: skip
    assert run.processed_items == run.total_items == 4
    assert run.counts["updated"] == 1 and run.counts["created"] == 2 and run.counts["failed"] == 1
    assert billing_book.quantity("1", "", "1") == 12 and billing_book.quantity("3", "", "1") is None


def test_refused_credentials_in_a_batch_record_every_line_then_stop(account, _psa, django_capture_on_commit_callbacks):
    tenants(account, [("Acme", "1", 12), ("Bravo", "2", 5), ("Charlie", "3", 7)])
    billing_book.write_errors[("1", "", "1")] = AuthFailedError("Authentication failed: check the Client Secret.")

    run = sync(account, django_capture_on_commit_callbacks)

    assert run.state == BillingRun.State.FAILED and run.message.startswith("Stopped: Authentication failed")
    states = dict(BillingItem.objects.filter(run=run).values_list("tenant__name", "state"))
    # Bravo was written in the same batch before the refusal was seen: recorded as written.
    assert states == {"Acme": "failed", "Bravo": "applied", "Charlie": "failed"}
    assert billing_book.quantity("2", "", "1") == 5 and billing_book.quantity("3", "", "1") is None
    assert _psa == [2]
