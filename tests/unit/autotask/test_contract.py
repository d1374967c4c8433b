"""Every request the Autotask adapters send, checked against Autotask's own swagger
(../shared/psa/specs/autotask.swagger.json): the operation exists, every body field exists in
that operation's model (case-insensitively, as Autotask matches them) with a compatible type,
and every query names real fields of the queried entity with values of their type.

Autotask ignores unknown properties silently (fact sheet section 8), so a misspelt field would
pass every other test and do nothing in production; this is the test that catches it.

The requests come from driving the real provider, ticketing and billing against the HTTP fake
and reading its request log, so the flows are the ones production runs.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import pytest

from integrations.autotask.client import query_all, query_body
from integrations.autotask.provider import AutotaskProvider
from integrations.base.billing import BillingTarget
from integrations.base.client import Transport
from integrations.base.ticketing import TicketDraft
from tests.fakes.autotask_server import INTEGRATION_CODE, SECRET, USERNAME, AutotaskFake

SWAGGER = Path(__file__).resolve().parents[4] / "shared" / "psa" / "specs" / "autotask.swagger.json"
pytestmark = pytest.mark.skipif(not SWAGGER.is_file(), reason=f"{SWAGGER} is not available")


@lru_cache(maxsize=1)
def swagger() -> dict:
    return json.loads(SWAGGER.read_text())


@lru_cache(maxsize=1)
def operations() -> list[tuple[re.Pattern, str, str, dict]]:
    """(path pattern, method, operation) for every swagger operation; paths match without case."""
    spec = swagger()
    out = []
    for template, item in spec["paths"].items():
        pattern = re.escape(spec["basePath"] + template)
        pattern = re.sub(r"\\\{[^}]+\\\}", r"[^/]+", pattern)
        for method, operation in item.items():
            out.append((re.compile(f"^{pattern}$", re.IGNORECASE), method.upper(), template, operation))
    return out


def operation_for(method: str, path: str) -> dict:
    matches = [(t, op) for pattern, m, t, op in operations() if m == method and pattern.match(path)]
    assert matches, f"Autotask's swagger has no {method} {path}"
    # The most literal template wins ("Tickets/entityInformation" over "Tickets/{id}").
    return min(matches, key=lambda match: match[0].count("{"))[1]


def model(name: str) -> dict[str, dict]:
    """A definition's properties, keyed by lower-cased name."""
    definition = swagger()["definitions"][name]
    return {key.lower(): value for key, value in definition.get("properties", {}).items()}


def body_model(operation: dict) -> str:
    [param] = [p for p in operation["parameters"] if p["in"] == "body"]
    return param["schema"]["$ref"].rsplit("/", 1)[-1]


def entity_model(path: str) -> str:
    """The model an entity's query returns: Tickets/query -> TicketModel."""
    operation = operation_for("POST", path.rsplit("/query", 1)[0] + "/query")
    return operation["responses"]["200"]["schema"]["$ref"].rsplit("/", 1)[-1]


def compatible(value, prop: dict) -> bool:
    kind, fmt = prop.get("type"), prop.get("format")
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string" and fmt == "date-time":
        return isinstance(value, str) and bool(datetime.fromisoformat(value.replace("Z", "+00:00")))
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    return True  # untyped ("value" of a filter item, $ref objects)


def check_body(body: dict, model_name: str, where: str) -> None:
    props = model(model_name)
    for name, value in body.items():
        prop = props.get(name.lower())
        assert prop is not None, f"{where}: {name!r} is not a field of {model_name}"
        assert compatible(value, prop), f"{where}: {name}={value!r} does not fit {model_name}.{name} ({prop})"


def check_filter(items: list, entity: str, where: str) -> None:
    fields = model(entity)
    for item in items:
        check_body(item, "Filter", where)
        if item["op"] in ("and", "or"):
            check_filter(item["items"], entity, where)
            continue
        prop = fields.get(item["field"].lower())
        assert prop is not None, f"{where}: filter field {item['field']!r} is not a field of {entity}"
        if item["op"] in ("exist", "notExist"):
            continue
        values = item["value"] if item["op"] in ("in", "notIn") else [item["value"]]
        assert isinstance(values, list)
        for value in values:
            assert compatible(value, prop), f"{where}: {item['field']}={value!r} does not fit {entity} ({prop})"


def check_request(request) -> None:
    where = f"{request.method} {request.path}"
    if request.path.lower().endswith("/query/next"):
        # Server-issued paging URLs are not in the swagger; the body is the original query's.
        entity_path = request.path[: -len("/next")]
        operation = None
    else:
        operation = operation_for(request.method, request.path)
        entity_path = request.path
    query_spec = None
    if request.path.lower().endswith(("/query", "/query/next", "/query/count")):
        query_spec = request.body if request.method == "POST" else json.loads(request.query["search"][0]) if "search" in request.query else None
    if query_spec is not None:
        check_body(query_spec, "QueryModel", where)
        check_filter(query_spec["filter"], entity_model(entity_path.rsplit("/count", 1)[0]), where)
        for name in query_spec.get("IncludeFields", []):
            assert name.lower() in model(entity_model(entity_path.rsplit("/count", 1)[0])), f"{where}: IncludeFields {name}"
    elif request.body is not None:
        assert operation is not None
        check_body(request.body, body_model(operation), where)


@pytest.fixture(scope="module")
def fake():
    with AutotaskFake(companies=30) as fake:
        yield fake


def test_every_request_the_adapters_send_fits_the_swagger(fake):
    transport = Transport(allow_private=True, sleep=lambda s: None)
    provider = AutotaskProvider(
        {"username": USERNAME, "zone_discovery_url": fake.discovery_url},
        {"secret": SECRET, "integration_code": INTEGRATION_CODE},
        transport,
        today=lambda: fake.today,
    )
    fake.reset_log()
    provider.verify()
    assert provider.check_permissions().ok
    list(provider.companies("acme"))
    provider.contacts("1")
    for kind, parent in provider.picklist_kinds.items():
        provider.picklist(kind, {"issue_type": "10", "company": "1", "contract": "103"}.get(parent or "", ""))
    list(query_all(provider.client, "Companies", query_body([{"op": "gte", "field": "id", "value": 0}], max_records=5), method="GET"))
    list(query_all(provider.client, "Companies", query_body([{"op": "gte", "field": "id", "value": 0}], max_records=5)))

    ticketing = provider.ticketing()
    ref = ticketing.create(
        TicketDraft(
            reference="hub-incident-contract", company_id="1", summary="Contract test", description="body",
            board_id="29682833", status_id="1", priority_id="4", type_id="2", source_id="8", contact_id="301",
            extra={"issue_type_id": "10", "sub_issue_type_id": "100", "ticket_category_id": "2"},
        )
    )  # fmt: skip
    ticketing.create(
        TicketDraft(
            reference="hub-incident-contract-2", company_id="1", summary="By e-mail", description="body",
            status_id="1", priority_id="2", contact_email="ann@example.com",
        )
    )  # fmt: skip
    assert ticketing.find_by_reference("hub-incident-contract").id == ref.id
    ticketing.update(ref.id, status_id="8", priority_id="1")
    ticketing.add_note(ref.id, "internal note")
    ticketing.add_note(ref.id, "public note", internal=False)

    billing = provider.billing()
    billing.prefetch([BillingTarget(company_id="1", product_id="1", agreement_id=c) for c in ("100", "101", "105")])
    for contract_id, service_id in (("100", "1"), ("105", "2")):
        target = BillingTarget(company_id="1", product_id=service_id, agreement_id=contract_id)
        line = billing.read_line(target)
        billing.write_quantity(target, line, line.quantity + 3)

    sent = [r for r in fake.requests if r.status == 200]
    assert len(sent) == len(fake.requests), [(r.method, r.path, r.status) for r in fake.requests if r.status != 200]
    kinds = {(r.method, r.path.split("/V1.0/")[-1].split("/")[0]) for r in sent}
    assert {("POST", "Tickets"), ("PATCH", "Tickets"), ("POST", "Contracts")} <= kinds
    for request in sent:
        check_request(request)


def test_the_checker_catches_a_misspelt_field():
    class Request:
        method, path, query = "POST", "/ATServicesRest/V1.0/Tickets", {}
        body = {"companyID": 1, "titel": "typo"}

    with pytest.raises(AssertionError, match="'titel' is not a field of TicketModel"):
        check_request(Request)


def test_the_checker_catches_a_wrong_type():
    class Request:
        method, path, query = "POST", "/ATServicesRest/V1.0/Contracts/5/ServiceAdjustments", {}
        body = {"contractID": 5, "serviceID": 1, "unitChange": "3", "effectiveDate": "2025-09-30T00:00:00Z"}

    with pytest.raises(AssertionError, match="unitChange='3' does not fit"):
        check_request(Request)


def test_the_checker_catches_a_boolean_for_the_integer_contacts_is_active():
    class Request:
        method, path, query = "POST", "/ATServicesRest/V1.0/Contacts/query", {}
        body = {"filter": [{"op": "eq", "field": "isActive", "value": True}]}

    with pytest.raises(AssertionError, match="isActive=True does not fit ContactModel"):
        check_request(Request)
