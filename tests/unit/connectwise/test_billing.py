"""ConnectWiseBilling: read the one addition carrying the product, create or update its
quantity, and the seeds' business rules word for word."""

from __future__ import annotations

from datetime import date

import pytest

from integrations.base.billing import BillingLine, BillingTarget
from integrations.base.errors import BlockedError, InvalidError, NotFoundError
from integrations.connectwise.billing import ConnectWiseBilling
from tests.unit.connectwise.support import API, auth, body, fixture, query

AGREEMENT_FIELDS = "id,name,company,agreementStatus,cancelledFlag,dateCancelled"
ADDITION_FIELDS = "id,product,quantity,agreementId,cancelledDate"
CATALOG_FIELDS = "id,identifier,description,inactiveFlag"
TARGET = BillingTarget(company_id="250", product_id="701", agreement_id="3001")
MULTIPLE = (
    "Multiple agreements contain the mapped product for this company. Only one agreement per company should have "
    "the product. Resolve in ConnectWise."
)


@pytest.fixture
def billing(provider) -> ConnectWiseBilling:
    adapter = provider.billing()
    adapter.today = lambda: date(2025, 6, 1)
    return adapter


def catalog(mocked_responses, name="catalog_item.json", item="701"):
    mocked_responses.get(
        API + f"procurement/catalog/{item}", json=fixture(name), match=[query(fields=CATALOG_FIELDS), auth()]
    )


def agreements(mocked_responses, records, company="250"):
    mocked_responses.get(
        API + "finance/agreements",
        json=records,
        match=[
            query(
                conditions=f"company/id={company} and cancelledFlag=false",
                orderBy="id asc",
                fields=AGREEMENT_FIELDS,
                pageSize=1000,
            ),
            auth(),
        ],
    )


def additions(mocked_responses, agreement_id, records, product="701"):
    mocked_responses.get(
        API + f"finance/agreements/{agreement_id}/additions",
        json=records,
        match=[
            query(
                conditions=f"product/id={product} and cancelledDate=null",
                orderBy="id asc",
                fields=ADDITION_FIELDS,
                pageSize=1000,
            ),
            auth(),
        ],
    )


def agreement(agreement_id, name, company=250):
    return {
        "id": agreement_id,
        "name": name,
        "company": {"id": company, "name": "Acme Dental"},
        "agreementStatus": "Active",
    }


def test_read_finds_the_addition_on_the_mapped_agreement(mocked_responses, billing):
    catalog(mocked_responses)
    agreements(mocked_responses, fixture("agreements_acme.json"))
    additions(mocked_responses, 3001, fixture("additions_mdr.json"))
    additions(mocked_responses, 3002, [])

    line = billing.read_line(TARGET)

    assert line == BillingLine(line_id="9001", quantity=15, label="Agreement “Managed Security” / Addition 9001")


def test_an_equal_count_reads_and_writes_nothing(mocked_responses, billing):
    catalog(mocked_responses)
    agreements(mocked_responses, fixture("agreements_acme.json"))
    additions(mocked_responses, 3001, fixture("additions_mdr.json"))
    additions(mocked_responses, 3002, [])

    assert billing.read_line(TARGET).quantity == 15
    assert {c.request.method for c in mocked_responses.calls} == {"GET"}


def test_update_patches_the_absolute_quantity(mocked_responses, billing):
    catalog(mocked_responses)
    agreements(mocked_responses, fixture("agreements_acme.json")[:1])
    additions(mocked_responses, 3001, fixture("additions_mdr.json"))
    mocked_responses.patch(
        API + "finance/agreements/3001/additions/9001",
        json=fixture("addition_patched.json"),
        match=[body([{"op": "replace", "path": "quantity", "value": 18}]), auth()],
    )

    current = billing.read_line(TARGET)
    line = billing.write_quantity(TARGET, current, 18)

    assert line == BillingLine("9001", 18, "Agreement “Managed Security” / Addition 9001")


def test_create_posts_a_billable_addition_with_the_overrides(mocked_responses, billing):
    target = BillingTarget(
        company_id="251",
        product_id="701",
        agreement_id="3003",
        description="Palisade domains",
        unit_price="12.50",
        unit_cost="6",
    )
    catalog(mocked_responses)
    agreements(mocked_responses, [agreement(3003, "Managed Services", 251)], company="251")
    additions(mocked_responses, 3003, [])
    mocked_responses.post(
        API + "finance/agreements/3003/additions",
        status=201,
        json=fixture("addition_created.json"),
        match=[
            body(
                {
                    "product": {"id": 701},
                    "billCustomer": "Billable",
                    "quantity": 18,
                    "effectiveDate": "2025-06-01T00:00:00Z",
                    "invoiceDescription": "Palisade domains",
                    "unitPrice": 12.5,
                    "unitCost": 6.0,
                }
            ),
            auth(),
        ],
    )

    current = billing.read_line(target)
    assert current == BillingLine(None, 0, "Agreement “Managed Services” (no addition yet)")
    line = billing.write_quantity(target, current, 18)

    assert line == BillingLine("9100", 18, "Agreement “Managed Services” / Addition 9100")


def test_the_product_on_two_agreements_blocks_with_the_seed_message(mocked_responses, billing):
    catalog(mocked_responses)
    agreements(
        mocked_responses, [agreement(3004, "MSA Primary", 254), agreement(3005, "MSA Legacy", 254)], company="254"
    )
    additions(mocked_responses, 3004, [{"id": 9003, "product": {"id": 701}, "quantity": 10}])
    additions(mocked_responses, 3005, [{"id": 9004, "product": {"id": 701}, "quantity": 3}])

    with pytest.raises(BlockedError) as caught:
        billing.read_line(BillingTarget(company_id="254", product_id="701", agreement_id="3004"))

    assert str(caught.value) == MULTIPLE


def test_the_product_twice_on_one_agreement_is_a_conflict_too(mocked_responses, billing):
    catalog(mocked_responses)
    agreements(mocked_responses, [agreement(3009, "Security Bundle", 253)], company="253")
    additions(mocked_responses, 3009, [{"id": 9007, "quantity": 5}, {"id": 9008, "quantity": 6}])

    with pytest.raises(BlockedError) as caught:
        billing.read_line(BillingTarget(company_id="253", product_id="701", agreement_id="3009"))

    assert "appears 2 times on agreement “Security Bundle”" in str(caught.value)


def test_the_product_on_another_agreement_than_the_mapped_one(mocked_responses, billing):
    catalog(mocked_responses)
    agreements(mocked_responses, fixture("agreements_acme.json"))
    additions(mocked_responses, 3001, [])
    additions(mocked_responses, 3002, [{"id": 9010, "quantity": 4}])

    with pytest.raises(BlockedError) as caught:
        billing.read_line(TARGET)

    assert "is on agreement “Backup Services”, not on the mapped agreement “Managed Security”" in str(caught.value)


def test_an_inactive_catalog_item_blocks_before_any_agreement_is_read(mocked_responses, billing):
    catalog(mocked_responses, "catalog_item_inactive.json", item="703")

    with pytest.raises(BlockedError) as caught:
        billing.read_line(BillingTarget(company_id="250", product_id="703", agreement_id="3001"))

    assert str(caught.value) == (
        "Catalog item not found: “LEGACY-AV” has been deactivated in ConnectWise. Ensure the selected catalog item "
        "still exists in ConnectWise and has not been deactivated, or map another catalog item."
    )
    assert len(mocked_responses.calls) == 1


def test_a_deleted_catalog_item_blocks(mocked_responses, billing):
    mocked_responses.get(
        API + "procurement/catalog/799", status=404, json={"code": "NotFound", "message": "Catalog Item 799 not found"}
    )

    with pytest.raises(BlockedError) as caught:
        billing.read_line(BillingTarget(company_id="250", product_id="799", agreement_id="3001"))

    assert str(caught.value).startswith("Catalog item not found: catalog item 799 no longer exists in ConnectWise.")


def test_the_catalog_item_is_read_once_per_run(mocked_responses, billing):
    catalog(mocked_responses)
    agreements(mocked_responses, fixture("agreements_acme.json")[:1])
    additions(mocked_responses, 3001, fixture("additions_mdr.json"))
    agreements(mocked_responses, [agreement(3003, "Managed Services", 251)], company="251")
    additions(mocked_responses, 3003, [])

    billing.read_line(TARGET)
    billing.read_line(BillingTarget(company_id="251", product_id="701", agreement_id="3003"))

    assert sum("procurement/catalog" in c.request.url for c in mocked_responses.calls) == 1


def test_a_cancelled_mapped_agreement_is_named(mocked_responses, billing):
    catalog(mocked_responses)
    agreements(mocked_responses, [agreement(3007, "New Contract", 255)], company="255")
    mocked_responses.get(
        API + "finance/agreements/3006",
        json={**agreement(3006, "Old Contract", 255), "cancelledFlag": True, "agreementStatus": "Cancelled",
              "dateCancelled": "2025-01-31T00:00:00Z"},
        match=[query(fields=AGREEMENT_FIELDS)],
    )  # fmt: skip

    with pytest.raises(NotFoundError) as caught:
        billing.read_line(BillingTarget(company_id="255", product_id="701", agreement_id="3006"))

    assert str(caught.value) == (
        "The mapped agreement “Old Contract” was cancelled in ConnectWise on 2025-01-31. Map this tenant to an active "
        "agreement."
    )


def test_a_deleted_mapped_agreement_is_named(mocked_responses, billing):
    catalog(mocked_responses)
    agreements(mocked_responses, fixture("agreements_acme.json"))
    mocked_responses.get(
        API + "finance/agreements/3999", status=404, json={"code": "NotFound", "message": "Agreement 3999 not found"}
    )

    with pytest.raises(NotFoundError) as caught:
        billing.read_line(BillingTarget(company_id="250", product_id="701", agreement_id="3999"))

    assert "(id 3999) no longer exists in ConnectWise" in str(caught.value)


def test_a_mapped_agreement_of_another_company(mocked_responses, billing):
    catalog(mocked_responses)
    agreements(mocked_responses, fixture("agreements_acme.json"))
    mocked_responses.get(
        API + "finance/agreements/3003",
        json={
            "id": 3003,
            "name": "Managed Services",
            "company": {"id": 251, "name": "Globex Corporation"},
            "agreementStatus": "Active",
        },
    )

    with pytest.raises(NotFoundError) as caught:
        billing.read_line(BillingTarget(company_id="250", product_id="701", agreement_id="3003"))

    assert "belongs to Globex Corporation" in str(caught.value)


def test_an_addition_refused_for_its_product_says_catalog_item(mocked_responses, billing):
    mocked_responses.post(
        API + "finance/agreements/3003/additions", status=400, json=fixture("error_addition_inactive_product.json")
    )

    with pytest.raises(BlockedError) as caught:
        billing.write_quantity(BillingTarget("251", "701", "3003"), BillingLine(None, 0), 5)

    assert str(caught.value).startswith("Catalog item not found:")
    assert "Product LEGACY-AV is inactive." in str(caught.value)


def test_create_needs_a_mapped_agreement_and_sane_values(billing):
    with pytest.raises(InvalidError) as caught:
        billing.write_quantity(BillingTarget("251", "701"), BillingLine(None, 0), 5)
    assert caught.value.field == "agreement_id"
    with pytest.raises(InvalidError):
        billing.write_quantity(BillingTarget("251", "701", "3003", unit_price="twelve"), BillingLine(None, 0), 5)
    with pytest.raises(InvalidError):
        billing.write_quantity(TARGET, BillingLine("9001", 15), -1)


def test_prefetch_reads_many_companies_in_one_request(mocked_responses, billing):
    mocked_responses.get(
        API + "finance/agreements",
        json=[*fixture("agreements_acme.json")[:1], agreement(3003, "Managed Services", 251)],
        match=[
            query(
                conditions="company/id in (250,251) and cancelledFlag=false", orderBy="id asc", fields=AGREEMENT_FIELDS,
                pageSize=1000,
            )
        ],
    )  # fmt: skip
    mocked_responses.get(
        API + "procurement/catalog",
        json=[fixture("catalog_item.json")],
        match=[query(conditions="id in (701)", fields=CATALOG_FIELDS, pageSize=1000)],
    )
    additions(mocked_responses, 3001, fixture("additions_mdr.json"))
    additions(mocked_responses, 3003, [])
    targets = [TARGET, BillingTarget(company_id="251", product_id="701", agreement_id="3003")]

    billing.prefetch(targets)
    lines = [billing.read_line(t) for t in targets]

    assert [line.quantity for line in lines] == [15, 0]
    assert len(mocked_responses.calls) == 4  # 2 shared reads + one additions read per tenant
