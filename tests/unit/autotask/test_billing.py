"""AutotaskBilling against strict `responses`: seed 001's three messages word for word, the
current units of today's period, and the adjustment delta."""

from __future__ import annotations

from datetime import date

import pytest
import requests
from responses import matchers

from integrations.base.billing import BillingLine, BillingTarget
from integrations.base.errors import (
    BlockedError,
    InvalidError,
    NotFoundError,
    PermissionMissingError,
    UnavailableError,
)
from tests.unit.autotask.conftest import API, assert_no_secret, assert_request, fixture

CONTRACT = fixture("contract_active.json")["item"]
TARGET = BillingTarget(company_id="174", product_id="11", agreement_id="29683960")
LINES_BODY = {
    "filter": [{"op": "eq", "field": "contractID", "value": 29683960}, {"op": "eq", "field": "serviceID", "value": 11}],
    "MaxRecords": 500,
    "IncludeFields": ["id", "contractID", "serviceID"],
}
UNITS_BODY = {
    "filter": [
        {"op": "eq", "field": "contractID", "value": 29683960},
        {"op": "eq", "field": "contractServiceID", "value": 801},
        {"op": "lt", "field": "startDate", "value": "2025-10-01T00:00:00Z"},
        {"op": "gte", "field": "endDate", "value": "2025-09-30T00:00:00Z"},
    ],
    "MaxRecords": 500,
    "IncludeFields": ["id", "contractID", "contractServiceID", "startDate", "endDate", "units"],
}
LABEL = "Contract “Acme Managed Security” / Service 11"


def page(items):
    return {"items": items, "pageDetails": {"count": len(items), "requestCount": 500, "nextPageUrl": None}}


@pytest.fixture
def billing(provider):
    return provider.billing()


def contract(**changes):
    return {"item": {**CONTRACT, **changes}}


def test_read_line_reads_the_contract_its_line_and_todays_units(mocked_responses, billing, records):
    mocked_responses.get(API + "Contracts/29683960", json=contract())
    mocked_responses.post(API + "ContractServices/query", json=page([{"id": 801, "contractID": 29683960, "serviceID": 11}]))
    mocked_responses.post(
        API + "ContractServiceUnits/query",
        json=page([
            {"id": 1, "startDate": "2025-09-01T00:00:00Z", "endDate": "2025-09-14T00:00:00Z", "units": 10},
            {"id": 2, "startDate": "2025-09-15T00:00:00Z", "endDate": "2025-09-30T00:00:00Z", "units": 14},
        ]),
    )  # fmt: skip
    line = billing.read_line(TARGET)
    assert line == BillingLine(line_id="801", quantity=14, label=LABEL)
    assert_request(mocked_responses.calls[0], method="GET", url=API + "Contracts/29683960")
    assert_request(mocked_responses.calls[1], method="POST", url=API + "ContractServices/query", body=LINES_BODY)
    assert_request(mocked_responses.calls[2], method="POST", url=API + "ContractServiceUnits/query", body=UNITS_BODY)
    assert_no_secret(records)


def test_future_start_date_is_blocked_word_for_word(mocked_responses, billing):
    mocked_responses.get(API + "Contracts/29683960", json=contract(startDate="2025-10-15T00:00:00Z"))
    with pytest.raises(BlockedError) as caught:
        billing.read_line(TARGET)
    assert str(caught.value) == (
        "Contract “Acme Managed Security” has a start date of 2025-10-15, which is in the future. Billing cannot be "
        "synced until the contract period has begun — update the contract start date in Autotask or wait until the "
        "contract is active."
    )
    assert len(mocked_responses.calls) == 1  # nothing else is read, nothing written


def test_expired_contract_is_blocked_word_for_word(mocked_responses, billing):
    mocked_responses.get(API + "Contracts/29683960", json=contract(endDate="2025-09-29T00:00:00Z"))
    with pytest.raises(BlockedError) as caught:
        billing.read_line(TARGET)
    assert str(caught.value) == (
        "Contract “Acme Managed Security” ended on 2025-09-29. Billing cannot be synced to an expired contract — "
        "extend the contract end date in Autotask or map this tenant to an active contract."
    )


def test_contract_ending_today_is_still_active(mocked_responses, billing):
    mocked_responses.get(API + "Contracts/29683960", json=contract(endDate="2025-09-30T00:00:00Z", startDate="2025-09-30T00:00:00Z"))
    mocked_responses.post(API + "ContractServices/query", json=page([]))
    assert billing.read_line(TARGET) == BillingLine(line_id=None, quantity=0, label=LABEL)


def test_duplicate_service_is_blocked_word_for_word(mocked_responses, billing):
    mocked_responses.get(API + "Contracts/29683960", json=contract())
    mocked_responses.post(
        API + "ContractServices/query",
        json=page([{"id": 801, "serviceID": 11}, {"id": 802, "serviceID": 11}, {"id": 803, "serviceID": 11}]),
    )
    with pytest.raises(BlockedError) as caught:
        billing.read_line(TARGET)
    assert str(caught.value) == (
        "Duplicate service found — the mapped Autotask Service appears 3 times on this contract. Remove the duplicate "
        "in Autotask by deleting it (if not yet invoiced) or setting its units to 0 with a past-dated removal, then retry."
    )
    assert len(mocked_responses.calls) == 2


def test_missing_contract_is_named(mocked_responses, billing):
    mocked_responses.get(API + "Contracts/29683960", json={"item": None})
    with pytest.raises(NotFoundError, match="The Autotask contract 29683960 mapped to this tenant no longer exists"):
        billing.read_line(TARGET)


def test_contract_of_another_company_is_blocked(mocked_responses, billing):
    mocked_responses.get(API + "Contracts/29683960", json=contract(companyID=999))
    with pytest.raises(BlockedError, match="belongs to another Autotask company"):
        billing.read_line(TARGET)


def test_contract_that_is_not_recurring_service_is_blocked(mocked_responses, billing):
    mocked_responses.get(API + "Contracts/29683960", json=contract(contractType=6))
    with pytest.raises(BlockedError, match="is not a Recurring Service contract"):
        billing.read_line(TARGET)


def test_no_unit_row_for_today_reads_as_zero(mocked_responses, billing):
    mocked_responses.get(API + "Contracts/29683960", json=contract())
    mocked_responses.post(API + "ContractServices/query", json=page([{"id": 801, "serviceID": 11}]))
    mocked_responses.post(API + "ContractServiceUnits/query", json=page([]))
    assert billing.read_line(TARGET).quantity == 0


def test_unchanged_count_writes_nothing(mocked_responses, billing):
    current = BillingLine(line_id="801", quantity=14, label=LABEL)
    assert billing.write_quantity(TARGET, current, 14) is current
    assert len(mocked_responses.calls) == 0


@pytest.mark.parametrize("new, change", [(20, 6), (9, -5), (0, -14)])
def test_write_posts_the_difference_effective_today(mocked_responses, billing, new, change):
    mocked_responses.post(API + "Contracts/29683960/ServiceAdjustments", json={"itemId": 5501})
    line = billing.write_quantity(TARGET, BillingLine(line_id="801", quantity=14, label=LABEL), new)
    assert_request(
        mocked_responses.calls[0],
        method="POST",
        url=API + "Contracts/29683960/ServiceAdjustments",
        body={
            "contractID": 29683960,
            "serviceID": 11,
            "effectiveDate": "2025-09-30T00:00:00Z",
            "unitChange": change,
            "contractServiceID": 801,
        },
    )
    assert line == BillingLine(line_id="801", quantity=new, label=LABEL)


def test_write_to_a_service_not_on_the_contract_yet_creates_the_line(mocked_responses, billing):
    mocked_responses.post(
        API + "Contracts/29683960/ServiceAdjustments",
        match=[matchers.json_params_matcher(
            {"contractID": 29683960, "serviceID": 11, "effectiveDate": "2025-09-30T00:00:00Z", "unitChange": 7}
        )],
        json={"itemId": 5502},
    )  # fmt: skip
    mocked_responses.post(
        API + "ContractServices/query",
        match=[matchers.json_params_matcher({**LINES_BODY, "IncludeFields": ["id"]})],
        json=page([{"id": 900}]),
    )
    line = billing.write_quantity(TARGET, BillingLine(line_id=None, quantity=0, label=LABEL), 7)
    assert line == BillingLine(line_id="900", quantity=7, label=LABEL)


def test_negative_count_is_refused(billing):
    with pytest.raises(InvalidError):
        billing.write_quantity(TARGET, BillingLine(line_id="801", quantity=3), -1)


def test_lost_answer_to_an_adjustment_is_not_resent(mocked_responses, billing):
    mocked_responses.post(API + "Contracts/29683960/ServiceAdjustments", body=requests.exceptions.ReadTimeout())
    with pytest.raises(UnavailableError) as caught:
        billing.write_quantity(TARGET, BillingLine(line_id="801", quantity=14), 15)
    assert caught.value.outcome_unknown and len(mocked_responses.calls) == 1


def test_missing_contracts_permission_names_both_modules(mocked_responses, billing):
    mocked_responses.get(
        API + "Contracts/29683960",
        status=500,
        json={"errors": ["The logged in Resource does not have the adequate permissions to query this entity type."]},
    )
    with pytest.raises(PermissionMissingError) as caught:
        billing.read_line(TARGET)
    assert caught.value.which == "Contracts"
    assert "Billing needs both modules: Contracts and Services." in str(caught.value)
    assert "Contracts — read and write access to Recurring Service Contracts" in caught.value.fix


def test_missing_services_permission_on_write(mocked_responses, billing):
    mocked_responses.post(
        API + "Contracts/29683960/ServiceAdjustments",
        status=500,
        json=fixture("error_permission_create.json"),
    )
    with pytest.raises(PermissionMissingError, match="does not allow it to create Contract Service Adjustments"):
        billing.write_quantity(TARGET, BillingLine(line_id="801", quantity=14), 15)


def test_401_on_billing_uses_the_seed_wording(mocked_responses, billing, records):
    mocked_responses.get(API + "Contracts/29683960", status=401)
    with pytest.raises(PermissionMissingError) as caught:
        billing.read_line(TARGET)
    assert "Verify the security level grants access to both modules (Contracts and Services)." in str(caught.value)
    assert str(caught.value).startswith("Autotask answered 401 Unauthorized to a billing request.")
    assert len(mocked_responses.calls) == 1
    assert_no_secret(records, str(caught.value))


def test_today_is_injectable(make_provider, mocked_responses):
    billing = make_provider(today=date(2024, 12, 31)).billing()
    mocked_responses.get(API + "Contracts/29683960", json=contract())
    with pytest.raises(BlockedError, match="has a start date of 2025-01-01, which is in the future"):
        billing.read_line(TARGET)


# --- prefetch: three requests for many tenants -------------------------------------------------


def test_prefetch_reads_many_contracts_in_three_requests(mocked_responses, billing):
    other = {**CONTRACT, "id": 29683961, "contractName": "Globex Security", "companyID": 175}
    mocked_responses.post(
        API + "Contracts/query",
        match=[matchers.json_params_matcher({
            "filter": [{"op": "in", "field": "id", "value": [29683960, 29683961, 29683962]}],
            "MaxRecords": 500,
            "IncludeFields": ["id", "contractName", "companyID", "contractType", "status", "startDate", "endDate"],
        })],
        json=page([CONTRACT, other]),
    )  # fmt: skip
    mocked_responses.post(
        API + "ContractServices/query",
        match=[matchers.json_params_matcher({
            "filter": [{"op": "in", "field": "contractID", "value": [29683960, 29683961, 29683962]}],
            "MaxRecords": 500,
            "IncludeFields": ["id", "contractID", "serviceID"],
        })],
        json=page([
            {"id": 801, "contractID": 29683960, "serviceID": 11},
            {"id": 802, "contractID": 29683960, "serviceID": 12},
            {"id": 901, "contractID": 29683961, "serviceID": 11},
            {"id": 902, "contractID": 29683961, "serviceID": 11},
        ]),
    )  # fmt: skip
    mocked_responses.post(
        API + "ContractServiceUnits/query",
        match=[matchers.json_params_matcher({
            "filter": [
                {"op": "in", "field": "contractID", "value": [29683960, 29683961, 29683962]},
                {"op": "lt", "field": "startDate", "value": "2025-10-01T00:00:00Z"},
                {"op": "gte", "field": "endDate", "value": "2025-09-30T00:00:00Z"},
            ],
            "MaxRecords": 500,
            "IncludeFields": ["id", "contractID", "contractServiceID", "startDate", "endDate", "units"],
        })],
        json=page([
            {"id": 1, "contractID": 29683960, "contractServiceID": 801, "startDate": "2025-09-01T00:00:00Z",
             "endDate": "2025-09-30T00:00:00Z", "units": 14},
            {"id": 2, "contractID": 29683960, "contractServiceID": 802, "startDate": "2025-09-01T00:00:00Z",
             "endDate": "2025-09-30T00:00:00Z", "units": 3},
        ]),
    )  # fmt: skip
    targets = [
        TARGET,
        BillingTarget(company_id="174", product_id="12", agreement_id="29683960"),
        BillingTarget(company_id="175", product_id="11", agreement_id="29683961"),
        BillingTarget(company_id="176", product_id="11", agreement_id="29683962"),
        BillingTarget(company_id="177", product_id="11", agreement_id=""),  # unmapped: skipped
    ]
    billing.prefetch(targets)
    assert len(mocked_responses.calls) == 3
    assert billing.read_line(targets[0]) == BillingLine(line_id="801", quantity=14, label=LABEL)
    assert billing.read_line(targets[1]).quantity == 3
    with pytest.raises(BlockedError, match="appears 2 times on this contract"):
        billing.read_line(targets[2])
    with pytest.raises(NotFoundError, match="contract 29683962"):
        billing.read_line(targets[3])
    assert len(mocked_responses.calls) == 3  # every read came from the prefetch


def test_a_write_drops_what_prefetch_read_of_that_contract(mocked_responses, billing):
    mocked_responses.post(API + "Contracts/query", json=page([CONTRACT]))
    mocked_responses.post(API + "ContractServices/query", json=page([{"id": 801, "contractID": 29683960, "serviceID": 11}]))
    mocked_responses.post(API + "ContractServiceUnits/query", json=page([]))
    billing.prefetch([TARGET])
    line = billing.read_line(TARGET)
    mocked_responses.post(API + "Contracts/29683960/ServiceAdjustments", json={"itemId": 1})
    billing.write_quantity(TARGET, line, 5)
    mocked_responses.get(API + "Contracts/29683960", json=contract())
    mocked_responses.post(API + "ContractServices/query", json=page([{"id": 801, "contractID": 29683960, "serviceID": 11}]))
    mocked_responses.post(
        API + "ContractServiceUnits/query",
        json=page([{"id": 3, "contractServiceID": 801, "startDate": "2025-09-30T00:00:00Z", "endDate": "2025-09-30T00:00:00Z", "units": 5}]),
    )
    assert billing.read_line(TARGET).quantity == 5
    assert len(mocked_responses.calls) == 7


def test_a_failed_prefetch_leaves_each_read_to_report_its_own_error(mocked_responses, billing):
    mocked_responses.post(API + "Contracts/query", status=500, json=fixture("error_permission_query.json"))
    billing.prefetch([TARGET])
    mocked_responses.get(API + "Contracts/29683960", status=500, json=fixture("error_permission_query.json"))
    with pytest.raises(PermissionMissingError, match="Billing needs both modules"):
        billing.read_line(TARGET)
