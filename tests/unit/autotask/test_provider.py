"""AutotaskProvider against strict `responses`: verify, permissions, companies, picklists."""

from __future__ import annotations

import pytest
from responses import matchers

from integrations.autotask.provider import AutotaskProvider
from integrations.base.errors import AuthFailedError, InvalidError
from tests.unit.autotask.conftest import (
    API,
    DISCOVERY,
    USERNAME,
    ZONE,
    assert_no_secret,
    assert_request,
    fixture,
)

ALL = {"op": "gte", "field": "id", "value": 0}
PROBE = {"filter": [ALL], "MaxRecords": 1, "IncludeFields": ["id"]}
PERMISSION = {"errors": ["The logged in Resource does not have the adequate permissions to query this entity type."]}
EMPTY = {"items": [], "pageDetails": {"count": 0, "requestCount": 1, "prevPageUrl": None, "nextPageUrl": None}}


def page(items, next_url=None):
    return {"items": items, "pageDetails": {"count": len(items), "requestCount": 500, "nextPageUrl": next_url}}


# --- verify --------------------------------------------------------------------------------------


def test_verify_discovers_the_zone_then_proves_the_credentials(mocked_responses, make_provider, records):
    provider = make_provider(config={"zone_url": "", "web_url": ""})
    mocked_responses.get(
        DISCOVERY + "v1.0/zoneInformation",
        match=[matchers.query_param_matcher({"user": USERNAME})],
        json=fixture("zone_information.json"),
    )
    mocked_responses.post(API + "Companies/query", json=page([{"id": 0}]))
    result = provider.verify()
    assert result.display_name == "Autotask America West 3"
    assert result.config_updates == {"zone_url": ZONE, "web_url": "https://ww14.autotask.net/", "zone_name": "America West 3"}
    assert_request(mocked_responses.calls[1], method="POST", url=API + "Companies/query", body=PROBE)
    assert_no_secret(records)


def test_verify_rediscovers_even_with_a_stored_zone(mocked_responses, provider):
    """The database may have moved zones since the last verification."""
    moved = {**fixture("zone_information.json"), "url": "https://webservices5.autotask.net/ATServicesRest/"}
    mocked_responses.get(DISCOVERY + "v1.0/zoneInformation", json=moved)
    mocked_responses.post("https://webservices5.autotask.net/ATServicesRest/V1.0/Companies/query", json=EMPTY)
    assert provider.verify().config_updates["zone_url"] == "https://webservices5.autotask.net/ATServicesRest/"


def test_verify_with_a_wrong_secret(mocked_responses, provider, records):
    mocked_responses.get(DISCOVERY + "v1.0/zoneInformation", json=fixture("zone_information.json"))
    mocked_responses.post(API + "Companies/query", status=401)
    with pytest.raises(AuthFailedError) as caught:
        provider.verify()
    assert str(caught.value).startswith("Authentication failed: Re-enter the Username, Password, and Tracking Identifier.")
    assert len(mocked_responses.calls) == 2
    assert_no_secret(records, str(caught.value))


def test_verify_with_a_wrong_tracking_identifier(mocked_responses, provider):
    mocked_responses.get(DISCOVERY + "v1.0/zoneInformation", json=fixture("zone_information.json"))
    mocked_responses.post(API + "Companies/query", status=500, json=fixture("error_integration_code.json"))
    with pytest.raises(AuthFailedError, match="Tracking Identifier"):
        provider.verify()


def test_verify_with_an_unknown_username(mocked_responses, make_provider):
    provider = make_provider(config={"username": "typo@acme.example"})
    mocked_responses.get(DISCOVERY + "v1.0/zoneInformation", status=500, json=fixture("zone_unknown_user.json"))
    with pytest.raises(AuthFailedError, match="does not know the Username “typo@acme.example”"):
        provider.verify()


def test_verify_without_secrets_makes_no_call(mocked_responses, make_provider):
    with pytest.raises(AuthFailedError, match="enter the Password and Tracking Identifier"):
        make_provider(secrets={}).verify()


def test_calls_without_a_stored_zone_discover_it_first(mocked_responses, make_provider):
    provider = make_provider(config={"zone_url": ""})
    mocked_responses.get(DISCOVERY + "v1.0/zoneInformation", json=fixture("zone_information.json"))
    mocked_responses.post(API + "Services/query", json=EMPTY)
    assert provider.services() == []
    assert provider.config["zone_url"] == ZONE


# --- permissions ---------------------------------------------------------------------------------


def _register_probes(mocked_responses, denied=(), unauthorized=()):
    for entity in ("Companies", "Contacts", "Tickets"):
        mocked_responses.post(API + f"{entity}/query", match=[matchers.json_params_matcher(PROBE)], json=EMPTY)
    mocked_responses.get(API + "Tickets/entityInformation/fields", json=fixture("tickets_fields.json"))
    for entity in ("TicketNotes", "Contracts", "ContractServices", "ContractServiceUnits", "Services"):
        if entity in denied:
            mocked_responses.post(API + f"{entity}/query", status=500, json=PERMISSION)
        elif entity in unauthorized:
            mocked_responses.post(API + f"{entity}/query", status=401)
        else:
            mocked_responses.post(API + f"{entity}/query", match=[matchers.json_params_matcher(PROBE)], json=EMPTY)


def test_all_permissions_present(mocked_responses, provider):
    _register_probes(mocked_responses)
    report = provider.check_permissions()
    assert report.ok
    assert [c.key for c in report.checks] == [
        "companies", "contacts", "tickets", "tickets.fields", "ticket_notes",
        "contracts", "contract_services", "contract_service_units", "services",
    ]  # fmt: skip


def test_missing_contracts_and_services_are_named_with_the_fix(mocked_responses, provider, records):
    _register_probes(mocked_responses, denied=("Contracts", "Services"))
    report = provider.check_permissions()
    assert not report.ok
    missing = {c.key: c for c in report.missing}
    assert set(missing) == {"contracts", "services"}
    assert missing["contracts"].label == "Contracts — read and write access to Recurring Service Contracts"
    assert missing["services"].label == "Services — read access to Services within those contracts"
    assert missing["contracts"].feature == "billing"
    assert missing["contracts"].message.startswith("The Autotask API user's security level does not allow it to query Contracts.")
    assert missing["services"].fix == (
        "In Autotask: Admin > Account Settings & Users > Resources/Users > Security Levels: give the API user's "
        "security level access to Services."
    )
    assert_no_secret(records, *(c.message for c in report.checks))


def test_a_401_after_other_calls_worked_is_a_missing_module(mocked_responses, provider):
    _register_probes(mocked_responses, unauthorized=("Contracts",))
    report = provider.check_permissions()
    [missing] = report.missing
    assert missing.key == "contracts"
    assert missing.message == "Contracts: 401 Unauthorized. Verify the security level grants access to both modules."


def test_a_401_on_the_first_probe_is_an_authentication_failure(mocked_responses, provider):
    mocked_responses.post(API + "Companies/query", status=401)
    with pytest.raises(AuthFailedError):
        provider.check_permissions()


# --- companies and contacts ----------------------------------------------------------------------


def test_companies_are_active_paged_and_never_company_zero(mocked_responses, provider):
    body = {
        "filter": [{"op": "eq", "field": "isActive", "value": True}, {"op": "gt", "field": "id", "value": 0}],
        "MaxRecords": 500,
        "IncludeFields": ["id", "companyName", "companyNumber", "isActive"],
    }
    next_url = API + "Companies/query/next?paging=p2"
    first = [{"id": 0, "companyName": "Own", "isActive": True}] + [
        {"id": i, "companyName": f"Customer {i}", "companyNumber": f"C{i}", "isActive": True} for i in range(1, 500)
    ]
    mocked_responses.post(API + "Companies/query", match=[matchers.json_params_matcher(body)], json=page(first, next_url))
    mocked_responses.post(next_url, match=[matchers.json_params_matcher(body)], json=page([{"id": 500, "companyName": "Last", "isActive": True}]))
    companies = list(provider.companies())
    assert len(companies) == 500
    assert companies[0].id == "1" and companies[0].identifier == "C1" and companies[-1].name == "Last"
    assert all(c.id != "0" for c in companies)


def test_company_search_adds_a_contains_filter(mocked_responses, provider):
    body = {
        "filter": [
            {"op": "eq", "field": "isActive", "value": True},
            {"op": "gt", "field": "id", "value": 0},
            {"op": "contains", "field": "companyName", "value": "acme"},
        ],
        "MaxRecords": 500,
        "IncludeFields": ["id", "companyName", "companyNumber", "isActive"],
    }
    mocked_responses.post(API + "Companies/query", match=[matchers.json_params_matcher(body)], json=page([{"id": 7, "companyName": "Acme"}]))
    assert [c.name for c in provider.companies(" acme ")] == ["Acme"]


def test_contacts_of_a_company(mocked_responses, provider):
    body = {
        "filter": [{"op": "eq", "field": "companyID", "value": 174}, {"op": "eq", "field": "isActive", "value": 1}],
        "MaxRecords": 500,
        "IncludeFields": ["id", "companyID", "firstName", "lastName", "emailAddress"],
    }
    record = {"id": 30, "companyID": 174, "firstName": "Ann", "lastName": "Admin", "emailAddress": "ann@acme.example"}
    mocked_responses.post(API + "Contacts/query", match=[matchers.json_params_matcher(body)], json=page([record]))
    [contact] = provider.contacts("174")
    assert (contact.id, contact.name, contact.email, contact.company_id) == ("30", "Ann Admin", "ann@acme.example", "174")


def test_a_non_numeric_company_id_is_refused_before_calling(mocked_responses, provider):
    with pytest.raises(InvalidError):
        provider.contacts("acme")


# --- picklists -----------------------------------------------------------------------------------


def test_one_fields_call_serves_every_ticket_picklist(mocked_responses, provider):
    mocked_responses.get(API + "Tickets/entityInformation/fields", json=fixture("tickets_fields.json"))
    queues = provider.picklist("queues")
    assert [(q.id, q.name) for q in queues] == [
        ("5", "Client Portal"), ("6", "Post Sale"), ("8", "Monitoring Alert"), ("29682833", "Level I Support"),
    ]  # fmt: skip
    statuses = provider.picklist("statuses")
    assert [s.id for s in statuses] == ["1", "8", "7", "5"]  # the inactive 12 is left out
    assert [s.id for s in statuses if s.extra["closed"]] == ["5"]
    assert [p.name for p in provider.picklist("priorities")] == ["Critical", "High", "Medium", "Low"]
    assert [t.name for t in provider.picklist("ticket_types")][:2] == ["Service Request", "Incident"]
    assert "Fax" not in [s.name for s in provider.picklist("sources")]
    assert [i.id for i in provider.picklist("issue_types")] == ["10", "11"]
    assert [(s.id, s.parent_id) for s in provider.picklist("sub_issue_types", "10")] == [("100", "10"), ("101", "10"), ("102", "10")]
    assert [s.id for s in provider.picklist("sub_issue_types", "11")] == ["110"]
    assert [c.name for c in provider.picklist("ticket_categories")] == ["Standard", "AEM Alert"]
    assert len(mocked_responses.calls) == 1
    assert_request(mocked_responses.calls[0], method="GET", url=API + "Tickets/entityInformation/fields")


def test_note_picklists(mocked_responses, provider):
    mocked_responses.get(API + "TicketNotes/entityInformation/fields", json=fixture("ticket_notes_fields.json"))
    assert [n.name for n in provider.picklist("note_types")] == ["Task Summary", "Task Detail", "Task Notes"]
    assert [p.id for p in provider.picklist("note_publish")] == ["1", "2", "4"]


def test_recurring_service_contracts_of_a_company(mocked_responses, provider):
    body = {
        "filter": [{"op": "eq", "field": "companyID", "value": 174}, {"op": "eq", "field": "contractType", "value": 7}],
        "MaxRecords": 500,
        "IncludeFields": ["id", "contractName", "contractNumber", "companyID", "status", "startDate", "endDate"],
    }
    mocked_responses.post(API + "Contracts/query", match=[matchers.json_params_matcher(body)], json=page([fixture("contract_active.json")["item"]]))
    [contract] = provider.picklist("contracts", "174")
    assert (contract.id, contract.name, contract.parent_id, contract.active) == ("29683960", "Acme Managed Security", "174", True)
    assert contract.extra == {"status": 1, "start_date": "2025-01-01", "end_date": "2026-12-31", "contract_number": "C-1001"}


def test_contract_services_carry_service_names(mocked_responses, provider):
    lines = [
        {"id": 801, "contractID": 5, "serviceID": 11, "unitPrice": 4.5, "invoiceDescription": "Security"},
        {"id": 802, "contractID": 5, "serviceID": 12, "unitPrice": 2.0, "invoiceDescription": None},
    ]
    mocked_responses.post(
        API + "ContractServices/query",
        match=[matchers.json_params_matcher({"filter": [{"op": "eq", "field": "contractID", "value": 5}], "MaxRecords": 500})],
        json=page(lines),
    )
    mocked_responses.post(
        API + "Services/query",
        match=[matchers.json_params_matcher(
            {"filter": [{"op": "in", "field": "id", "value": [11, 12]}], "MaxRecords": 500, "IncludeFields": ["id", "name"]}
        )],  # fmt: skip
        json=page([{"id": 11, "name": "Managed Security"}, {"id": 12, "name": "Email Protection"}]),
    )
    items = provider.picklist("contract_services", "5")
    assert [(i.id, i.name, i.parent_id, i.extra["service_id"]) for i in items] == [
        ("801", "Managed Security", "5", "11"), ("802", "Email Protection", "5", "12"),
    ]  # fmt: skip


def test_services(mocked_responses, provider):
    body = {"filter": [{"op": "eq", "field": "isActive", "value": True}], "MaxRecords": 500, "IncludeFields": ["id", "name", "unitPrice", "periodType"]}
    mocked_responses.post(API + "Services/query", match=[matchers.json_params_matcher(body)], json=page([{"id": 11, "name": "Managed Security", "unitPrice": 4.5, "periodType": 1}]))
    [service] = provider.picklist("services")
    assert (service.id, service.name, service.extra["unit_price"]) == ("11", "Managed Security", 4.5)


def test_unknown_picklist_kind(provider):
    with pytest.raises(InvalidError):
        provider.picklist("boards")


def test_every_declared_kind_is_served(provider):
    assert set(AutotaskProvider.picklist_kinds) >= {
        "queues", "statuses", "priorities", "ticket_types", "sources", "issue_types", "sub_issue_types",
        "ticket_categories", "contracts", "contract_services", "services",
    }  # fmt: skip
    assert AutotaskProvider.picklist_kinds["sub_issue_types"] == "issue_type"


def test_ticket_url_opens_the_ticket_in_autotask(provider):
    assert provider.ticket_url("7001") == (
        "https://ww14.autotask.net/Autotask/AutotaskExtend/ExecuteCommand.aspx?Code=OpenTicketDetail&TicketID=7001"
    )


def test_secret_fields_and_config_fields():
    assert AutotaskProvider.secret_fields == ("secret", "integration_code")
    assert AutotaskProvider.config_fields == ("username",)


def test_a_probe_autotask_rejects_is_reported_and_the_rest_still_run(mocked_responses, provider):
    for entity in ("Companies", "Contacts", "Tickets"):
        mocked_responses.post(API + f"{entity}/query", json=EMPTY)
    mocked_responses.get(API + "Tickets/entityInformation/fields", json=fixture("tickets_fields.json"))
    mocked_responses.post(API + "TicketNotes/query", status=500, json={"errors": ["Unable to find id in the TicketNote Entity."]})
    for entity in ("Contracts", "ContractServices", "ContractServiceUnits", "Services"):
        mocked_responses.post(API + f"{entity}/query", json=EMPTY)
    [missing] = provider.check_permissions().missing
    assert missing.key == "ticket_notes"
    assert missing.message == "Autotask rejected the value of id: Unable to find id in the TicketNote Entity."


def test_a_401_on_a_ticket_module_names_that_module(mocked_responses, provider):
    mocked_responses.post(API + "Companies/query", json=EMPTY)
    mocked_responses.post(API + "Contacts/query", status=401)
    mocked_responses.post(API + "Tickets/query", json=EMPTY)
    mocked_responses.get(API + "Tickets/entityInformation/fields", json=fixture("tickets_fields.json"))
    for entity in ("TicketNotes", "Contracts", "ContractServices", "ContractServiceUnits", "Services"):
        mocked_responses.post(API + f"{entity}/query", json=EMPTY)
    [missing] = provider.check_permissions().missing
    assert missing.message == (
        "Contacts (CRM): 401 Unauthorized. Verify the security level grants access to Contacts (CRM)."
    )
