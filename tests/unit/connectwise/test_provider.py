"""ConnectWiseProvider: verify (codebase discovery), the permission probes, and picklists, each
asserting the exact requests sent."""

from __future__ import annotations

import pytest

from integrations.base.errors import (
    AuthFailedError,
    BlockedError,
    InvalidError,
    UnavailableError,
)
from integrations.base.provider import Company, Contact
from integrations.connectwise.provider import ConnectWiseProvider
from tests.unit.connectwise.support import (
    API,
    CONFIG,
    SECRETS,
    SITE,
    assert_no_secret,
    auth,
    fixture,
    query,
    unauthenticated,
)

NEW_LINK = {k: v for k, v in CONFIG.items() if k not in ("codebase", "api_host")}


def test_verify_discovers_the_codebase_then_checks_the_keys(mocked_responses, recorder):
    mocked_responses.get(SITE + "/login/companyinfo/acme", json=fixture("companyinfo.json"), match=[unauthenticated])
    mocked_responses.get(API + "system/info", json=fixture("system_info.json"), match=[auth()])

    result = ConnectWiseProvider(dict(NEW_LINK), dict(SECRETS), recorder.transport()).verify()

    assert result.display_name == "Acme IT Services"
    assert result.config_updates == {"api_host": "api-na.myconnectwise.net", "codebase": "v2025_1/"}
    assert [c.request.url for c in mocked_responses.calls] == [
        "https://na.myconnectwise.net/login/companyinfo/acme",
        "https://api-na.myconnectwise.net/v2025_1/apis/3.0/system/info",
    ]


def test_verify_an_unknown_company_id(mocked_responses, recorder):
    mocked_responses.get(SITE + "/login/companyinfo/acme", body="null", content_type="application/json")

    with pytest.raises(AuthFailedError) as caught:
        ConnectWiseProvider(dict(NEW_LINK), dict(SECRETS), recorder.transport()).verify()

    assert str(caught.value).startswith(
        "Company ID not found: ConnectWise at na.myconnectwise.net has no company “acme”."
    )
    assert "Check the Company ID" in str(caught.value)


def test_verify_wrong_keys_names_the_values_and_leaks_nothing(mocked_responses, recorder):
    mocked_responses.get(SITE + "/login/companyinfo/acme", json=fixture("companyinfo.json"))
    mocked_responses.get(API + "system/info", status=401, json=fixture("error_unauthenticated.json"))

    with pytest.raises(AuthFailedError) as caught:
        ConnectWiseProvider(dict(NEW_LINK), dict(SECRETS), recorder.transport()).verify()

    assert str(caught.value).startswith(
        "Authentication failed: Verify Company ID, Site URL, Public and Private keys. Regenerate keys if needed."
    )
    assert_no_secret(str(caught.value), caught.value.vendor_message, repr(caught.value.__dict__), recorder.text())


def test_verify_a_cloud_404_on_system_info_is_read_as_refused_keys(mocked_responses, recorder):
    mocked_responses.get(SITE + "/login/companyinfo/acme", json=fixture("companyinfo.json"))
    mocked_responses.get(API + "system/info", status=404, json={"code": "NotFound", "message": "Not found"})

    with pytest.raises(AuthFailedError) as caught:
        ConnectWiseProvider(dict(NEW_LINK), dict(SECRETS), recorder.transport()).verify()

    assert "answered 404" in str(caught.value)


def test_verify_a_site_that_is_not_connectwise(mocked_responses, recorder):
    mocked_responses.get(SITE + "/login/companyinfo/acme", body="<html>Welcome</html>", content_type="text/html")

    with pytest.raises(UnavailableError) as caught:
        ConnectWiseProvider(dict(NEW_LINK), dict(SECRETS), recorder.transport()).verify()

    assert "answered with a web page" in str(caught.value)


def test_verify_a_site_without_companyinfo(mocked_responses, recorder):
    mocked_responses.get(SITE + "/login/companyinfo/acme", status=404, body="")

    with pytest.raises(InvalidError) as caught:
        ConnectWiseProvider(dict(NEW_LINK), dict(SECRETS), recorder.transport()).verify()

    assert caught.value.field == "site"


def test_verify_refuses_a_codebase_that_would_change_the_path(mocked_responses, recorder):
    mocked_responses.get(SITE + "/login/companyinfo/acme", json={**fixture("companyinfo.json"), "Codebase": "../x?/"})

    with pytest.raises(UnavailableError):
        ConnectWiseProvider(dict(NEW_LINK), dict(SECRETS), recorder.transport()).verify()


def test_verify_needs_the_hubs_client_id(mocked_responses, recorder):
    with pytest.raises(BlockedError) as caught:
        ConnectWiseProvider({**NEW_LINK, "client_id": ""}, dict(SECRETS), recorder.transport()).verify()
    assert "CONNECTWISE_CLIENT_ID" in str(caught.value)


def test_verify_refuses_a_site_on_a_private_network(mocked_responses, recorder):
    transport = recorder.transport()
    transport.resolver = lambda host, port: ["10.0.0.7"]

    with pytest.raises(BlockedError) as caught:
        ConnectWiseProvider(dict(NEW_LINK), dict(SECRETS), transport).verify()

    assert "private or local network address" in str(caught.value)


PROBES = [
    ("company/companies", {}),
    ("company/contacts", {}),
    ("service/boards", {"conditions": "inactiveFlag=false and projectFlag=false"}),
    ("service/boards/1/statuses", {}),
    ("service/boards/1/types", {}),
    ("service/priorities", {}),
    ("service/sources", {}),
    ("service/tickets", {}),
    ("finance/agreements", {}),
    ("procurement/catalog", {}),
    ("system/callbacks", {}),
]


def register_probes(mocked_responses, denied: str = ""):
    for path, params in PROBES:
        if path == denied:
            mocked_responses.get(API + path, status=403, json=fixture("error_security.json"))
            continue
        body = fixture("boards.json")[:1] if path == "service/boards" else []
        mocked_responses.get(API + path, json=body, match=[query(pageSize=1, **params), auth()])


def test_check_permissions_all_granted(mocked_responses, provider):
    register_probes(mocked_responses)

    report = provider.check_permissions()

    assert report.ok
    assert [c.key for c in report.checks] == [
        "company.companies", "company.contacts", "service.boards", "service.statuses", "service.types",
        "service.priorities", "service.sources", "service.tickets", "finance.agreements", "procurement.catalog",
        "system.callbacks",
    ]  # fmt: skip
    assert len(mocked_responses.calls) == len(PROBES)


def test_check_permissions_reports_the_missing_priority_table_in_seed_words(mocked_responses, provider):
    register_probes(mocked_responses, denied="service/priorities")

    report = provider.check_permissions()

    [missing] = report.missing
    assert missing.key == "service.priorities"
    assert missing.label == "Service > Priority"
    assert missing.feature == "tickets"
    assert missing.message == "ConnectWise API user does not have permission to access Service > Priority."
    assert missing.fix == (
        "In ConnectWise: System > Security Roles > your API role > Table Setup (customize): allow Service / Priority."
    )


@pytest.mark.parametrize(
    "denied, label",
    [
        ("finance/agreements", "Finance > Agreements"),
        ("procurement/catalog", "Procurement > Product Catalog"),
        ("company/companies", "Companies > Company Maintenance"),
        ("service/tickets", "Service Desk > Service Tickets"),
        ("system/callbacks", "System > Callbacks"),
    ],
)
def test_check_permissions_names_each_missing_capability(mocked_responses, provider, denied, label):
    register_probes(mocked_responses, denied=denied)

    [missing] = provider.check_permissions().missing

    assert missing.label == label
    assert missing.message == f"ConnectWise API user does not have permission to access {label}."


def test_without_board_access_statuses_and_types_cannot_be_checked(mocked_responses, provider):
    for path, params in PROBES:
        if path.startswith("service/boards/"):
            continue
        if path == "service/boards":
            mocked_responses.get(API + path, status=403, json=fixture("error_security.json"))
        else:
            mocked_responses.get(API + path, json=[], match=[query(pageSize=1, **params)])

    report = provider.check_permissions()

    assert [c.key for c in report.missing] == ["service.boards", "service.statuses", "service.types"]
    assert report.missing[1].message == "Could not be checked: Service Board access is missing."


def test_check_permissions_stops_on_wrong_keys(mocked_responses, provider):
    mocked_responses.get(API + "company/companies", status=401, json=fixture("error_unauthenticated.json"))
    with pytest.raises(AuthFailedError):
        provider.check_permissions()


def test_companies_pages_through_with_the_maximum_page_size(mocked_responses, provider):
    fields = "id,identifier,name,status,deletedFlag"
    page2 = (
        API + "company/companies?conditions=deletedFlag%3Dfalse&orderBy=name+asc&fields=" + fields.replace(",", "%2C")
    )
    page2 += "&pageSize=1000&page=2"
    mocked_responses.get(
        API + "company/companies",
        json=fixture("companies.json"),
        headers={"Link": f'<{page2}>; rel="next", <{page2}>; rel="last"'},
        match=[query(conditions="deletedFlag=false", orderBy="name asc", fields=fields, pageSize=1000), auth()],
    )
    mocked_responses.get(
        API + "company/companies",
        json=fixture("companies_page2.json"),
        match=[query(conditions="deletedFlag=false", orderBy="name asc", fields=fields, pageSize=1000, page=2), auth()],
    )

    companies = list(provider.companies())

    assert companies[0] == Company(id="250", name="Acme Dental", identifier="AcmeDental", active=True)
    assert [c.id for c in companies] == ["250", "251", "252"]


def test_companies_search_uses_a_like_condition_without_quotes(mocked_responses, provider):
    mocked_responses.get(
        API + "company/companies",
        json=fixture("companies.json")[:1],
        match=[
            query(
                conditions='deletedFlag=false and name like "%acme%"',
                orderBy="name asc",
                fields="id,identifier,name,status,deletedFlag",
                pageSize=1000,
            )
        ],
    )

    assert [c.name for c in provider.companies(' ac"me ')] == ["Acme Dental"]


def test_contacts_of_a_company(mocked_responses, provider):
    mocked_responses.get(
        API + "company/contacts",
        json=fixture("contacts.json"),
        match=[
            query(
                conditions="company/id=250 and inactiveFlag=false",
                orderBy="lastName asc",
                fields="id,firstName,lastName,company,inactiveFlag,communicationItems",
                pageSize=1000,
            ),
            auth(),
        ],
    )

    contacts = provider.contacts("250")

    assert contacts[0] == Contact(id="31", name="Jane Doe", email="jane@acmedental.example", company_id="250")
    assert contacts[1].email == ""


@pytest.mark.parametrize(
    "kind, parent, path, params, fixture_name, expected_extra",
    [
        ("boards", "", "service/boards", {"conditions": "inactiveFlag=false and projectFlag=false", "orderBy": "name asc"},
         "boards.json", {}),
        ("statuses", "1", "service/boards/1/statuses", {"conditions": "inactive=false", "orderBy": "sortOrder asc"},
         "board_statuses.json", {"closed": False, "default": True}),
        ("priorities", "", "service/priorities", {"orderBy": "sortOrder asc"}, "priorities.json",
         {"default": False, "sort": 1}),
        ("sources", "", "service/sources", {"orderBy": "name asc"}, "sources.json", {"default": True}),
        ("types", "1", "service/boards/1/types", {"conditions": "inactiveFlag=false", "orderBy": "name asc"},
         "board_types.json", {"default": True}),
        ("subtypes", "1", "service/boards/1/subtypes", {"conditions": "inactiveFlag=false", "orderBy": "name asc"},
         "board_subtypes.json", {"type_ids": ["201", "202"]}),
        ("items", "1", "service/boards/1/items", {"conditions": "inactiveFlag=false", "orderBy": "name asc"},
         "board_items.json", {}),
        ("teams", "1", "service/boards/1/teams", {"orderBy": "name asc"}, "board_teams.json", {"default": True}),
        ("agreements", "250", "finance/agreements",
         {"conditions": 'company/id=250 and cancelledFlag=false and agreementStatus="Active"', "orderBy": "name asc"},
         "agreements_acme.json", {"type": "", "status": "Active"}),
        ("catalog_items", "", "procurement/catalog", {"conditions": "inactiveFlag=false", "orderBy": "identifier asc"},
         "catalog_items.json", {"identifier": "MDR-SEAT"}),
    ],
)  # fmt: skip
def test_picklists(mocked_responses, provider, kind, parent, path, params, fixture_name, expected_extra):
    mocked_responses.get(API + path, json=fixture(fixture_name), match=[query(pageSize=1000, **params), auth()])

    items = provider.picklist(kind, parent)

    assert items[0].id == str(fixture(fixture_name)[0]["id"])
    assert items[0].extra == expected_extra
    assert items[0].parent_id == ("250" if kind == "agreements" else parent)


def test_picklist_of_an_unknown_kind_or_without_its_board(provider):
    with pytest.raises(InvalidError):
        provider.picklist("queues")
    with pytest.raises(InvalidError) as caught:
        provider.picklist("statuses")
    assert caught.value.field == "board"


def test_board_default_team_check(mocked_responses, provider):
    params = {"conditions": "defaultFlag=true", "pageSize": 1}
    mocked_responses.get(API + "service/boards/1/teams", json=fixture("board_teams.json")[:1], match=[query(**params)])
    mocked_responses.get(API + "service/boards/3/teams", json=[], match=[query(**params)])

    assert provider.board_has_default_team("1") is True
    assert provider.board_has_default_team("3") is False


def test_ticket_url_opens_the_ticket_in_the_web_ui(provider):
    assert provider.ticket_url("5000") == (
        "https://na.myconnectwise.net/v4_6_release/services/system_io/Service/fv_sr100_request.rails"
        "?service_recid=5000&companyName=acme"
    )
