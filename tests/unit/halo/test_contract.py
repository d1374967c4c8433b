"""Contract: every field the Halo adapter writes, and every query parameter it reads with,
exists in Halo's own OpenAPI document with the type sent (../shared/psa/specs/README.md).

The adapter is driven against the HTTP fake and the requests it really sent are checked, so a
new field in any body is covered without touching this file. The document is 3.6 MB, so the
parts used are cut into tests/fixtures/halo/openapi_cut.json; the last test proves the cut
still matches the vendor document when ../shared is present (regenerate with
`python -m tests.unit.halo.test_contract`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from integrations.base.billing import BillingTarget
from integrations.base.client import Transport
from integrations.base.ticketing import TicketDraft
from integrations.halo.provider import HaloProvider
from tests.fakes.halo_server import HaloFake

ROOT = Path(__file__).resolve().parents[3]
CUT = ROOT / "tests" / "fixtures" / "halo" / "openapi_cut.json"
VENDOR_DOCUMENT = ROOT.parent / "shared" / "psa" / "specs" / "halo.openapi.json"
SCHEMAS = ["Faults", "Actions", "Licence_List", "Webhook", "UnameNotification"]
PATHS = [
    "/AuthInfo", "/Agent/me", "/Client", "/Site", "/Users", "/Users/{id}", "/TicketType", "/TicketType/{id}",
    "/Status", "/Priority", "/SLA", "/SLA/{id}", "/Team", "/Outcome", "/Item", "/Item/{id}", "/ClientContract",
    "/Invoice", "/Tickets", "/Tickets/{id}", "/Actions", "/SoftwareLicence", "/SoftwareLicence/{id}", "/Webhook",
    "/Webhook/{id}",
]
# Fields newer than the 2024 document, each with the source that shows it.
NEWER_FIELDS = {
    ("Licence_List", "item_id"): "S2: Licence_List.g.cs generated from Halo's January 2026 OpenAPI document",
}
JSON_TYPES = {"integer": int, "string": str, "boolean": bool, "array": list, "object": dict, "number": (int, float)}


def _slim(prop: dict) -> dict:
    keep = {k: prop[k] for k in ("type", "format", "$ref") if k in prop}
    if "items" in prop:
        keep["items"] = _slim(prop["items"])
    return keep


def cut(full: dict) -> dict:
    paths = {}
    for path in PATHS:
        operations = {}
        for method, operation in full["paths"][path].items():
            entry = {"parameters": sorted({p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"})}
            if operation.get("requestBody"):
                entry["body"] = _slim(operation["requestBody"]["content"]["application/json"]["schema"])
            operations[method] = entry
        paths[path] = operations
    return {
        "source": (
            "Cut from ../shared/psa/specs/halo.openapi.json (Halo API v2, OpenAPI 3.0.1, as vendored in "
            "covenanttechnologysolutions/halopsa-rest generator/spec/swagger.json, 2024) by "
            "tests/unit/halo/test_contract.py; only property types and query parameters are kept."
        ),
        "schemas": {name: {p: _slim(v) for p, v in full["components"]["schemas"][name]["properties"].items()} for name in SCHEMAS},
        "paths": paths,
    }


@pytest.fixture(scope="module")
def spec() -> dict:
    return json.loads(CUT.read_text())


@pytest.fixture(scope="module")
def sent():
    """Every request the adapter makes in a full round of its features, as the fake received them."""
    with HaloFake(clients=30) as halo:
        provider = HaloProvider(halo.config(), halo.secrets(), Transport(allow_private=True))
        provider.verify()
        provider.check_permissions()
        list(provider.companies("Acme"))
        provider.contacts("1")
        for kind, parent in (("ticket_types", ""), ("statuses", "3"), ("priorities", "3"), ("priorities", ""),
                             ("teams", ""), ("outcomes", ""), ("items", ""), ("licences", "1"), ("sites", "1")):
            provider.picklist(kind, parent)
        ticketing = provider.ticketing()
        ticket = ticketing.create(
            TicketDraft(
                reference="hub-incident-7", company_id="1", summary="Suspicious sign-in", description="Details",
                board_id="3", status_id="1", priority_id="2", team_id="2", contact_id="102",
            )
        )
        ticketing.find_by_reference("hub-incident-7")
        ticketing.get(ticket.id)
        ticketing.update(ticket.id, status_id="2", priority_id="1")
        ticketing.add_note(ticket.id, "Seen again")
        billing = provider.billing()
        billing.write_quantity(BillingTarget("1", "1", line_id="1"), billing.read_line(BillingTarget("1", "1", line_id="1")), 11)
        billing.write_quantity(BillingTarget("3", "2"), billing.read_line(BillingTarget("3", "2")), 4)
        webhook_id = provider.ensure_webhook(
            "https://hub.example/hooks/halo/x", username="halo", password="pw-123456",
            events=[{"eventno": 1, "name": "Ticket updated"}],
        )
        provider.remove_webhook(webhook_id)
        return [r for r in halo.requests if r.path.lower().startswith("/api/")]


def _template(spec: dict, path: str) -> str:
    rest = path[len("/api"):]
    for template in spec["paths"]:
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, rest, re.IGNORECASE):
            return template
    raise AssertionError(f"{path} is not a path of Halo's API document")


def _check(value, prop: dict, spec: dict, where: str) -> list[str]:
    if value is None:
        return []
    if "$ref" in prop:
        return _check_object(value, prop["$ref"].rsplit("/", 1)[-1], spec, where)
    expected = JSON_TYPES.get(prop.get("type", ""))
    if expected is None:
        return []
    if isinstance(value, bool) and expected is not bool:
        return [f"{where}: a boolean where Halo wants {prop['type']}"]
    if not isinstance(value, expected):
        return [f"{where}: {type(value).__name__} where Halo wants {prop['type']}"]
    if prop.get("type") == "array" and "items" in prop:
        return [p for i, item in enumerate(value) for p in _check(item, prop["items"], spec, f"{where}[{i}]")]
    return []


def _check_object(row: dict, schema: str, spec: dict, where: str) -> list[str]:
    properties = spec["schemas"][schema]
    problems = []
    for name, value in row.items():
        if (schema, name) in NEWER_FIELDS:
            continue
        if name not in properties:
            problems.append(f"{where}.{name}: not a field of {schema}")
            continue
        problems.extend(_check(value, properties[name], spec, f"{where}.{name}"))
    return problems


def test_the_round_covers_every_write(sent):
    posted = {r.path.lower() for r in sent if r.method == "POST"}
    assert posted == {"/api/tickets", "/api/actions", "/api/softwarelicence", "/api/webhook"}


def test_every_body_is_an_array_of_real_fields_with_the_right_types(sent, spec):
    problems = []
    for request in sent:
        if request.method != "POST":
            continue
        operation = spec["paths"][_template(spec, request.path)]["post"]
        assert operation["body"]["type"] == "array", "Halo takes arrays on every POST"
        assert isinstance(request.body, list), f"{request.path} was sent {type(request.body).__name__}"
        schema = operation["body"]["items"]["$ref"].rsplit("/", 1)[-1]
        for index, row in enumerate(request.body):
            problems.extend(_check_object(row, schema, spec, f"POST {request.path}[{index}]"))
    assert not problems, "\n".join(problems)


def test_every_query_parameter_is_one_halo_documents(sent, spec):
    problems = []
    for request in sent:
        template = _template(spec, request.path)
        operation = spec["paths"][template].get(request.method.lower())
        assert operation is not None, f"{request.method} {template} is not in Halo's API document"
        unknown = set(request.query) - set(operation["parameters"])
        if unknown:
            problems.append(f"{request.method} {template}: {sorted(unknown)}")
    assert not problems, "\n".join(problems)


def test_ids_are_sent_as_integers(sent):
    tickets = [r.body[0] for r in sent if r.method == "POST" and r.path.lower() == "/api/tickets"]
    create = tickets[0]
    assert all(type(create[k]) is int for k in ("client_id", "tickettype_id", "status_id", "priority_id", "user_id", "site_id"))


def test_the_newer_fields_we_rely_on_are_still_missing_from_the_2024_document(spec):
    """When the vendored document catches up, the allowance above should go."""
    for schema, name in NEWER_FIELDS:
        assert name not in spec["schemas"][schema]


@pytest.mark.skipif(not VENDOR_DOCUMENT.exists(), reason="../shared/psa/specs is not beside this checkout")
def test_the_cut_matches_the_vendor_document():
    assert json.loads(CUT.read_text()) == cut(json.loads(VENDOR_DOCUMENT.read_text()))


if __name__ == "__main__":
    CUT.write_text(json.dumps(cut(json.loads(VENDOR_DOCUMENT.read_text())), indent=0, sort_keys=True) + "\n")
