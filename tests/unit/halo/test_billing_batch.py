"""HaloBilling.write_quantities: many licence counts in one POST (Halo takes arrays), new licences
one by one, and each licence's own outcome when Halo refuses the whole POST."""

from __future__ import annotations

import pytest

from integrations.base.billing import BillingLine, BillingTarget
from integrations.base.errors import AuthFailedError, NotFoundError, UnavailableError
from integrations.halo.billing import WRITE_BATCH, HaloBilling
from tests.unit.halo.support import API, bearer, body, expect_token, load


@pytest.fixture
def billing(rsps, provider):
    expect_token(rsps)
    return provider.billing()


def target(**overrides) -> BillingTarget:
    return BillingTarget(**{"company_id": "7", "product_id": "40", **overrides})


def licence(licence_id: int, count: int) -> dict:
    return {**load("licence_77"), "id": licence_id, "count": count}


def test_counts_of_existing_licences_go_in_one_post(rsps, billing):
    rsps.post(f"{API}/SoftwareLicence", json=[licence(77, 18), licence(78, 4), licence(79, 0)],
              match=[bearer(), body([{"id": 77, "count": 18}, {"id": 78, "count": 4}, {"id": 79, "count": 0}])])  # fmt: skip

    results = billing.write_quantities([
        (target(), BillingLine("77", 15, "A"), 18),
        (target(company_id="8"), BillingLine("78", 2, "B"), 4),
        (target(company_id="9"), BillingLine("79", 5, "C"), 0),
    ])  # fmt: skip

    assert results == [BillingLine("77", 18, "A"), BillingLine("78", 4, "B"), BillingLine("79", 0, "C")]
    assert len([c for c in rsps.calls if c.request.method == "POST" and "SoftwareLicence" in c.request.url]) == 1


def test_an_answer_without_the_records_takes_the_counts_as_sent(rsps, billing):
    rsps.post(f"{API}/SoftwareLicence", json=licence(77, 18))  # the shape of a many-record answer is undocumented

    results = billing.write_quantities([(target(), BillingLine("77", 15), 18), (target(), BillingLine("78", 2), 4)])

    assert [(r.line_id, r.quantity) for r in results] == [("77", 18), ("78", 4)]


def test_new_licences_are_created_one_by_one_beside_the_batch(rsps, billing):
    rsps.get(f"{API}/Item/40", json=load("items")["items"][0])
    rsps.post(f"{API}/SoftwareLicence", json=load("licence_created"),
              match=[body([{"name": "Email Security (per user)", "client_id": 9, "site_id": -1, "count": 12,
                            "item_id": 40, "type": 0}])])  # fmt: skip
    rsps.post(f"{API}/SoftwareLicence", json=[licence(77, 18)], match=[body([{"id": 77, "count": 18}])])

    results = billing.write_quantities([(target(company_id="9"), BillingLine(None, 0), 12), (target(), BillingLine("77", 15), 18)])

    assert (results[0].line_id, results[0].quantity) == ("91", 12)
    assert (results[1].line_id, results[1].quantity) == ("77", 18)


def test_a_refused_post_is_retried_licence_by_licence_so_only_the_gone_one_fails(rsps, billing):
    rsps.post(f"{API}/SoftwareLicence", status=404, match=[body([{"id": 77, "count": 18}, {"id": 78, "count": 4}])])
    rsps.post(f"{API}/SoftwareLicence", json=licence(77, 18), match=[body([{"id": 77, "count": 18}])])
    rsps.post(f"{API}/SoftwareLicence", status=404, match=[body([{"id": 78, "count": 4}])])

    results = billing.write_quantities([(target(), BillingLine("77", 15), 18), (target(), BillingLine("78", 2), 4)])

    assert results[0] == BillingLine("77", 18)
    assert isinstance(results[1], NotFoundError)


def test_a_transient_failure_concerns_every_licence(rsps, billing, sleeps):
    for _ in range(4):
        rsps.post(f"{API}/SoftwareLicence", status=503)

    results = billing.write_quantities([(target(), BillingLine("77", 15), 18), (target(), BillingLine("78", 2), 4)])

    assert all(isinstance(r, UnavailableError) for r in results) and results[0] is results[1]


def test_refused_credentials_are_not_tried_licence_by_licence(provider, monkeypatch):
    billing = provider.billing()
    calls = []

    def refuse(licences, idempotent=False):
        calls.append(licences)
        raise AuthFailedError("Authentication failed: check the Client ID and Client Secret.")

    monkeypatch.setattr(billing.client, "post_licences", refuse)
    results = billing.write_quantities([(target(), BillingLine("77", 15), 18), (target(), BillingLine("78", 2), 4)])

    assert all(isinstance(r, AuthFailedError) for r in results) and len(calls) == 1


def test_the_engine_hands_halo_a_hundred_lines_at_a_time():
    assert HaloBilling.write_batch == WRITE_BATCH == 100
