"""Billing end to end through the REST API, with a real worker process and the HTTP fake PSAs.

Per vendor: link the fake, map tenants (company, agreement/contract/licence), report usage in
bulk, preview (nothing written in the fake), sync (quantities in the fake), re-sync (no write
at all), with the seeded bad agreements/contracts failing word for word and the other tenants
going on. ConnectWise also shows a PSA 500 in the middle of a run (that tenant retried later)
and a deactivated catalog item; Autotask a missing permission naming both modules.
"""

from __future__ import annotations


import pytest

from billing import tasks
from billing.models import BillingItem
from integrations import services as integration_services
from integrations.autotask.billing import DUPLICATE, EXPIRED, FUTURE_START
from integrations.connectwise.billing import MULTIPLE_AGREEMENTS
from integrations.models import IntegrationLog
from tests.factories import make_tenant
from tests.flows import link_through_api, wait_for

pytestmark = pytest.mark.integration

CATALOG_FIX = (
    "Ensure the selected catalog item still exists in ConnectWise and has not been deactivated, or map another "
    "catalog item."
)


@pytest.fixture
def api(api_for, personas):
    return api_for(personas.account_a)


def set_up(api, account, products: dict, tenants: dict, usage: dict) -> None:
    """products {key: psa id}; tenants {external_id: (name, company id, {product: mapping})};
    usage {(external_id, product): units}."""
    for key, psa_id in products.items():
        response = api.post("/api/v1/billing/products", {"key": key, "psa_product_id": psa_id}, format="json")
        assert response.status_code == 201, response.content
    for external_id, (name, company_id, mappings) in tenants.items():
        tenant = make_tenant(account, name, external_id)
        if company_id:
            integration_services.map_tenant(account, tenant, company_id, name)
        rows = [{"product": key, **fields} for key, fields in mappings.items()]
        response = api.put(f"/api/v1/tenants/{external_id}/billing", {"mappings": rows}, format="json")
        assert response.status_code == 200, response.content
    items = [{"tenant": t, "product": p, "units": units} for (t, p), units in usage.items()]
    response = api.post("/api/v1/usage", {"items": items}, format="json")
    assert response.status_code == 200 and response.json()["accepted"] == len(items), response.content
    response = api.put("/api/v1/billing/settings", {"mode": "automatic"}, format="json")
    assert response.status_code == 200, response.content


def run(api, worker, *, apply: bool, until=("done",)) -> dict:
    response = api.post("/api/v1/billing/runs", {"apply": apply}, format="json")
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]
    return wait_for(
        lambda: (body := api.get(f"/api/v1/billing/runs/{run_id}").json())["state"] in until and body,
        f"billing run #{run_id} to reach {until}",
        worker,
    )


def lines(body: dict) -> dict:
    return {(item["tenant"], item["product"]): item for item in body["items"]}


def assert_no_secret_logged(psas, vendor: str) -> None:
    text = "\n".join(
        f"{r.message} {r.request_excerpt} {r.response_excerpt} {r.http_path}" for r in IntegrationLog.objects.all()
    )
    for secret in psas.secrets(vendor):
        assert secret not in text


# --- ConnectWise: agreement additions (seeds 000, 003, 004) --------------------------------------------


def test_connectwise_preview_sync_and_resync(worker_process, transactional_db, personas, api, restored):
    psas, cw, account = restored, restored.connectwise, personas.account_a
    link_through_api(api, account, psas, "connectwise", worker_process)
    set_up(
        api, account,
        products={"domains": "701", "devices": "703"},
        tenants={
            "acme": ("Acme Dental", "250", {"domains": {"agreement_id": "3001"}, "devices": {"agreement_id": "3001"}}),
            "globex": ("Globex Corporation", "251", {"domains": {"agreement_id": "3003", "agreement_name": "Managed Services"}}),
            "initech": ("Initech", "252", {"domains": {"agreement_id": "3008"}}),
            "two": ("Two Agreements Ltd", "254", {"domains": {"agreement_id": "3004"}}),
            "cancelled": ("Cancelled Agreement Co", "255", {"domains": {"agreement_id": "3006"}}),
            "umbrella": ("Umbrella Health", "253", {"domains": {"agreement_id": "3009"}}),
            "stark": ("Stark Industries", "257", {}),
        },
        usage={("acme", "domains"): 18, ("acme", "devices"): 3, ("globex", "domains"): 7, ("initech", "domains"): 4,
               ("two", "domains"): 5, ("cancelled", "domains"): 2, ("umbrella", "domains"): 9,
               ("stark", "domains"): 11},
    )  # fmt: skip
    blocked = {
        ("two", "domains"): MULTIPLE_AGREEMENTS,
        ("cancelled", "domains"): "The mapped agreement “Old Contract” was cancelled in ConnectWise on 2025-01-31. Map "
        "this tenant to an active agreement.",
        ("umbrella", "domains"): "The mapped product appears 2 times on agreement “Security Bundle”. Only one addition per "
        "agreement should carry the product. Resolve in ConnectWise.",
        ("acme", "devices"): f"Catalog item not found: “LEGACY-AV” has been deactivated in ConnectWise. {CATALOG_FIX}",
    }

    # Preview: the plan, and nothing written in ConnectWise.
    preview = run(api, worker_process, apply=False, until=("planned",))
    plan = lines(preview)
    assert (plan[("acme", "domains")]["action"], plan[("acme", "domains")]["current_quantity"],
            plan[("acme", "domains")]["new_quantity"]) == ("update", 15, 18)  # fmt: skip
    assert plan[("globex", "domains")]["action"] == "create" and plan[("initech", "domains")]["action"] == "create"
    assert plan[("stark", "domains")]["action"] == "unmapped"
    for key, message in blocked.items():
        assert (plan[key]["action"], plan[key]["error"]) == ("blocked", message)
    assert cw.api_requests("POST", "finance") == [] and cw.api_requests("PATCH") == []
    assert cw.additions[9001]["quantity"] == 15

    # Sync, with a PSA 500 on Globex's additions: Globex is retried later, the run completes.
    cw.fail_next(500, count=1, path="finance/agreements/3003/additions")
    synced = run(api, worker_process, apply=True)
    result = lines(synced)
    assert cw.additions[9001]["quantity"] == 18, "seed 004: the one addition goes from 15 to 18"
    initech = [a for a in cw.additions.values() if a["agreementId"] == 3008 and a["cancelledDate"] is None]
    assert [(a["product"]["id"], a["quantity"]) for a in initech] == [(701, 4)]
    assert (result[("acme", "domains")]["before_quantity"], result[("acme", "domains")]["after_quantity"]) == (15, 18)
    for key, message in blocked.items():
        assert (result[key]["state"], result[key]["error"]) == ("failed", message)
    waiting = result[("globex", "domains")]
    assert waiting["state"] == "failed" and waiting["retryable"] is True, waiting
    assert synced["counts"]["retrying"] == 1 and synced["counts"]["updated"] == 1 and synced["counts"]["created"] == 1

    tasks.execute_run.delay(synced["id"], True)  # the retry, without waiting for its backoff
    globex = wait_for(
        lambda: (item := BillingItem.objects.get(run_id=synced["id"], tenant__external_id="globex")).state == "applied"
        and item,
        "Globex's retry",
        worker_process,
    )
    [addition] = [a for a in cw.additions.values() if a["agreementId"] == 3003]
    assert (addition["product"]["id"], addition["quantity"], addition["billCustomer"]) == (701, 7, "Billable")
    assert globex.after_quantity == 7 and int(globex.line_id) == addition["id"]

    # Re-sync: one read per tenant, nothing written.
    cw.requests.clear()
    resync = run(api, worker_process, apply=True)
    assert cw.api_requests("POST", "finance") == [] and cw.api_requests("PATCH") == []
    after = lines(resync)
    assert all(after[key]["action"] == "none" for key in (("acme", "domains"), ("globex", "domains"), ("initech", "domains")))

    # Seed 004 goes on: 18 → 16, absolute.
    response = api.put("/api/v1/tenants/acme/usage/domains", {"units": 16}, format="json")
    assert response.status_code == 200
    run(api, worker_process, apply=True)
    assert cw.additions[9001]["quantity"] == 16
    writes = IntegrationLog.objects.filter(account=account, action="billing.write", tenant__external_id="acme")
    assert writes.count() == 2 and all(w.subject.startswith("billing_run:") for w in writes)
    assert_no_secret_logged(psas, "connectwise")


# --- Autotask: recurring service contracts (seed 001) ---------------------------------------------------


def test_autotask_preview_sync_and_the_seed_messages(worker_process, transactional_db, personas, api, restored):
    psas, at, account = restored, restored.autotask, personas.account_a
    link_through_api(api, account, psas, "autotask", worker_process)
    contracts = at.tables["Contracts"]
    set_up(
        api, account,
        products={"users": "1", "devices": "3"},
        tenants={
            "acme": ("Acme Corp", "1", {"users": {"agreement_id": "100"}, "devices": {"agreement_id": "105"}}),
            "globex": ("Globex Corporation", "2", {"users": {"agreement_id": "101"}}),
            "initech": ("Initech", "3", {"users": {"agreement_id": "102"}}),
            "umbrella": ("Umbrella Corporation", "4", {"users": {"agreement_id": "103"}}),
        },
        usage={("acme", "users"): 14, ("acme", "devices"): 4, ("globex", "users"): 3, ("initech", "users"): 3,
               ("umbrella", "users"): 6},
    )  # fmt: skip
    blocked = {
        ("globex", "users"): FUTURE_START.format(name="Globex Go-Live Contract", start=contracts[101]["startDate"][:10]),
        ("initech", "users"): EXPIRED.format(name="Initech 2023 Contract", end=contracts[102]["endDate"][:10]),
        ("umbrella", "users"): DUPLICATE.format(count=2),
    }
    [acme_line] = [cs["id"] for cs in at.tables["ContractServices"].values() if cs["contractID"] == 100]
    assert at.units_today(acme_line) == 10

    preview = run(api, worker_process, apply=False, until=("planned",))
    plan = lines(preview)
    assert (plan[("acme", "users")]["current_quantity"], plan[("acme", "users")]["new_quantity"]) == (10, 14)
    for key, message in blocked.items():
        assert (plan[key]["action"], plan[key]["error"]) == ("blocked", message)
    assert at.requests_to("ContractServiceAdjustments") == []

    synced = run(api, worker_process, apply=True)
    result = lines(synced)
    assert at.units_today(acme_line) == 14
    [created] = [cs["id"] for cs in at.tables["ContractServices"].values() if cs["contractID"] == 105]
    assert at.units_today(created) == 4 and result[("acme", "devices")]["action"] == "create"
    for key, message in blocked.items():
        assert (result[key]["state"], result[key]["error"]) == ("failed", message)
    adjustments = [r.body for r in at.requests_to("ContractServiceAdjustments", "POST")]
    assert sorted(a["unitChange"] for a in adjustments) == [4, 4], "one adjustment of the difference per line"

    at.reset_log()
    run(api, worker_process, apply=True)
    assert at.requests_to("ContractServiceAdjustments") == [], "an unchanged re-sync writes nothing"

    # A security level without Contracts: every tenant fails naming both modules.
    at.deny("Contracts")
    api.put("/api/v1/tenants/acme/usage/users", {"units": 15}, format="json")
    denied = lines(run(api, worker_process, apply=True))
    assert denied[("acme", "users")]["state"] == "failed"
    assert "Billing needs both modules: Contracts and Services." in denied[("acme", "users")]["error"]
    assert at.units_today(acme_line) == 14
    assert_no_secret_logged(psas, "autotask")


# --- Halo: software licences (seed 002) -----------------------------------------------------------------


def test_halo_licences_are_kept_in_step(worker_process, transactional_db, personas, api, restored):
    psas, halo, account = restored, restored.halo, personas.account_a
    link_through_api(api, account, psas, "halo", worker_process)
    set_up(
        api, account,
        products={"users": "1"},
        tenants={
            "acme": ("Acme Corporation", "1", {"users": {}}),
            "globex": ("Globex Ltd", "2", {"users": {}}),
            "initech": ("Initech", "3", {"users": {}}),
        },
        usage={("acme", "users"): 12, ("globex", "users"): 6, ("initech", "users"): 7},
    )  # fmt: skip

    preview = lines(run(api, worker_process, apply=False, until=("planned",)))
    assert (preview[("acme", "users")]["action"], preview[("acme", "users")]["current_quantity"]) == ("update", 10)
    assert preview[("initech", "users")]["action"] == "create"
    assert preview[("globex", "users")]["action"] == "blocked"
    assert preview[("globex", "users")]["error"].startswith("Two or more Halo software licences for this client use the mapped item")
    assert halo.licences[1]["count"] == 10

    synced = lines(run(api, worker_process, apply=True))
    assert halo.licences[1]["count"] == 12
    created = halo.licences[int(synced[("initech", "users")]["line_id"])]
    assert (created["client_id"], created["item_id"], created["count"]) == (3, 1, 7)
    assert synced[("globex", "users")]["state"] == "failed"

    before = len(halo.requests_to("/api/SoftwareLicence", "POST"))
    run(api, worker_process, apply=True)
    assert len(halo.requests_to("/api/SoftwareLicence", "POST")) == before, "an unchanged re-sync writes nothing"
    assert_no_secret_logged(psas, "halo")


# --- two syncs of one account at once -------------------------------------------------------------------


def test_two_syncs_of_one_account_never_interleave(worker_process, transactional_db, personas, api, restored):
    psas, cw, account = restored, restored.connectwise, personas.account_a
    link_through_api(api, account, psas, "connectwise", worker_process)
    set_up(
        api, account,
        products={"domains": "701"},
        tenants={"acme": ("Acme Dental", "250", {"domains": {"agreement_id": "3001"}}),
                 "globex": ("Globex Corporation", "251", {"domains": {"agreement_id": "3003"}}),
                 "initech": ("Initech", "252", {"domains": {"agreement_id": "3008"}})},
        usage={("acme", "domains"): 20, ("globex", "domains"): 8, ("initech", "domains"): 6},
    )  # fmt: skip
    cw.latency_ms = 150  # each run takes a second or two: long enough to overlap without the claim

    ids = [api.post("/api/v1/billing/runs", {"apply": True}, format="json").json()["id"] for _ in range(2)]
    seen_waiting = set()

    def both_done():
        bodies = [api.get(f"/api/v1/billing/runs/{run_id}").json() for run_id in ids]
        seen_waiting.update(b["id"] for b in bodies if b["state"] == "waiting")
        return all(b["state"] == "done" for b in bodies) and bodies

    first, second = sorted(wait_for(both_done, "both runs", worker_process), key=lambda b: b["started_at"])
    assert first["finished_at"] <= second["started_at"], "the second run started only after the first had finished"
    assert seen_waiting, "one of them waited for the other"
    assert cw.additions[9001]["quantity"] == 20
    assert first["counts"]["updated"] + second["counts"]["updated"] == 1, "the quantity was written once"
    assert second["counts"]["unchanged"] == 3
