"""HaloBilling: a tenant's units as a software licence count, one licence per client and item."""

from __future__ import annotations

import pytest

from integrations.base.billing import BillingLine, BillingTarget
from integrations.base.errors import BlockedError, NotFoundError, UnavailableError
from tests.unit.halo.support import API, bearer, body, expect_token, load, paged


@pytest.fixture
def billing(rsps, provider):
    expect_token(rsps)
    return provider.billing()


def target(**overrides) -> BillingTarget:
    return BillingTarget(**{"company_id": "7", "product_id": "40", **overrides})


def test_a_mapped_licence_is_read_by_id(rsps, billing):
    rsps.get(f"{API}/SoftwareLicence/77", json=load("licence_77"), match=[bearer()])

    line = billing.read_line(target(line_id="77"))

    assert line == BillingLine("77", 15, "Software licence “Email Security” (77)")


def test_without_a_mapped_licence_the_clients_licence_for_the_item_is_found(rsps, billing):
    rsps.get(f"{API}/SoftwareLicence", json=load("licences_client7"), match=[bearer(), paged(1, client_id=7)])

    assert billing.read_line(target()) == BillingLine("77", 15, "Software licence “Email Security” (77)")


def test_no_licence_for_the_item_is_a_line_to_create(rsps, billing):
    rsps.get(f"{API}/SoftwareLicence", json=load("licences_client9_none"), match=[paged(1, client_id=9)])

    assert billing.read_line(target(company_id="9")) == BillingLine(None, 0)


def test_two_licences_on_the_mapped_item_block_the_tenant(rsps, billing):
    rsps.get(f"{API}/SoftwareLicence", json=load("licences_client8_duplicate"), match=[paged(1, client_id=8)])

    with pytest.raises(BlockedError) as caught:
        billing.read_line(target(company_id="8"))

    message = caught.value.message
    assert message.startswith("Two or more Halo software licences for this client use the mapped item")
    assert "“Email Security” (80)" in message and "“Email Security (old)” (81)" in message
    assert "Keep one" in message


def test_licences_that_do_not_say_their_item_block_rather_than_risk_a_duplicate(rsps, billing):
    old = {k: v for k, v in load("licence_77").items() if k not in ("item_id", "linked_item")}
    rsps.get(f"{API}/SoftwareLicence", json={"record_count": 1, "licences": [old]}, match=[paged(1, client_id=7)])

    with pytest.raises(BlockedError, match="Pick the licence"):
        billing.read_line(target())


def test_a_deleted_mapped_licence_is_not_found_with_what_to_do(rsps, billing):
    rsps.get(f"{API}/SoftwareLicence/77", status=404)

    with pytest.raises(NotFoundError, match="no longer exists"):
        billing.read_line(target(line_id="77"))


def test_a_mapped_licence_of_another_client_is_blocked(rsps, billing):
    rsps.get(f"{API}/SoftwareLicence/77", json=load("licence_77"))

    with pytest.raises(BlockedError, match="belongs to Customer 007"):
        billing.read_line(target(company_id="8", line_id="77"))


def test_an_equal_count_is_read_and_nothing_written(rsps, billing):
    rsps.get(f"{API}/SoftwareLicence/77", json=load("licence_77"))

    line = billing.read_line(target(line_id="77"))

    assert line.quantity == 15  # the service compares and, being equal, does not call write_quantity
    assert [c.request.method for c in rsps.calls] == ["POST", "GET"]


def test_an_existing_licence_gets_its_count_set(rsps, billing):
    rsps.post(f"{API}/SoftwareLicence", json={**load("licence_77"), "count": 18}, match=[bearer(), body([{"id": 77, "count": 18}])])

    line = billing.write_quantity(target(line_id="77"), BillingLine("77", 15, "L"), 18)

    assert line == BillingLine("77", 18, "L")


def test_a_count_update_is_retried_after_a_502(rsps, billing, sleeps):
    rsps.post(f"{API}/SoftwareLicence", status=502)
    rsps.post(f"{API}/SoftwareLicence", json={**load("licence_77"), "count": 16})

    assert billing.write_quantity(target(), BillingLine("77", 18), 16).quantity == 16
    assert len(sleeps) == 1


def test_a_missing_licence_is_created_for_the_client_and_item(rsps, billing):
    created = [{"name": "Email Security (per user)", "client_id": 9, "site_id": -1, "count": 12, "item_id": 40, "type": 0}]
    rsps.get(f"{API}/Item/40", json=load("items")["items"][0])
    rsps.post(f"{API}/SoftwareLicence", json=load("licence_created"), match=[bearer(), body(created)])

    line = billing.write_quantity(target(company_id="9"), BillingLine(None, 0), 12)

    assert line.line_id == "91" and line.quantity == 12


def test_a_given_name_and_licence_type_are_used_on_create(rsps, make_provider):
    expect_token(rsps)
    created = [{"name": "Petra Email Security", "client_id": 9, "site_id": -1, "count": 3, "item_id": 40, "type": 1}]
    rsps.post(f"{API}/SoftwareLicence", json=load("licence_created"), match=[body(created)])

    make_provider(licence_type="1").billing().write_quantity(
        target(company_id="9", name="Petra Email Security"), BillingLine(None, 0), 3
    )


def test_a_lost_answer_on_create_is_not_resent(rsps, billing, sleeps):
    rsps.get(f"{API}/Item/40", json=load("items")["items"][0])
    rsps.post(f"{API}/SoftwareLicence", status=504)

    with pytest.raises(UnavailableError) as caught:
        billing.write_quantity(target(company_id="9"), BillingLine(None, 0), 12)

    assert caught.value.outcome_unknown and sleeps == []


def test_prefetch_lists_every_licence_once_for_a_run_over_many_clients(rsps, billing):
    everything = load("licences_client7")["licences"] + load("licences_client8_duplicate")["licences"]
    rsps.get(f"{API}/SoftwareLicence", json={"record_count": 4, "licences": everything}, match=[bearer(), paged(1)])
    targets = [target(), target(company_id="8"), target(company_id="9"), target(line_id="78", product_id="41")]

    billing.prefetch(targets)

    assert billing.read_line(targets[0]).line_id == "77"
    with pytest.raises(BlockedError):
        billing.read_line(targets[1])
    assert billing.read_line(targets[2]) == BillingLine(None, 0)  # client 9 has no licence at all
    assert billing.read_line(targets[3]).quantity == 2
    assert [c.request.method for c in rsps.calls] == ["POST", "GET"]  # the token and one listing


def test_after_prefetch_a_count_change_is_seen_by_later_reads(rsps, billing):
    rsps.get(f"{API}/SoftwareLicence", json=load("licences_client7"), match=[paged(1)])
    rsps.post(f"{API}/SoftwareLicence", json={**load("licence_77"), "count": 20})

    billing.prefetch([target(), target(company_id="8")])
    billing.write_quantity(target(), billing.read_line(target()), 20)

    assert billing.read_line(target()).quantity == 20


def test_a_create_with_a_lost_answer_drops_the_prefetched_listing(rsps, billing):
    rsps.get(f"{API}/SoftwareLicence", json=load("licences_client9_none"), match=[paged(1)])
    rsps.post(f"{API}/SoftwareLicence", status=502)
    rsps.get(f"{API}/SoftwareLicence", json={"record_count": 2, "licences": load("licences_client9_none")["licences"] + [load("licence_created")]}, match=[paged(1, client_id=9)])
    created_target = target(company_id="9", name="Email Security (per user)")

    billing.prefetch([created_target, target(company_id="8")])
    with pytest.raises(UnavailableError):
        billing.write_quantity(created_target, billing.read_line(created_target), 12)

    assert billing.read_line(created_target).line_id == "91"  # asked Halo again, found, not created twice


def test_a_single_client_run_needs_no_prefetch(rsps, provider):
    provider.billing().prefetch([target(), target(product_id="41")])

    assert not rsps.calls
