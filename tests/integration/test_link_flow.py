"""Linking each PSA end to end through the REST API, with a real worker process and the HTTP fakes.

The flow per vendor: PUT /api/v1/connection, poll until connected, check permissions (one
refused in the fake, named in words), refresh a picklist, import customers through the page,
map a tenant, pause and resume, update the credentials keeping the secret, remove. Then the bad
inputs of issue 3: wrong keys, a private host without PSA_ALLOW_PRIVATE_HOSTS, a DNS failure
and a timeout, HTML or invalid JSON instead of the API, a 429 storm. After every test no
secret may be in any integration log row, connection row or API answer, and every request
the fakes answered must be in the integration log.
"""

from __future__ import annotations

import time

import pytest

from integrations import services, tasks
from integrations.models import CompanyMapping, Connection, IntegrationLog, Picklist, PsaCompany
from tests.factories import make_tenant
from tests.fakes.servers import VENDORS
from tests.flows import wait_for
from tests.psa_log import assert_every_request_logged, assert_no_secret_recorded, wait_until_idle

pytestmark = pytest.mark.integration

# The tenants of each vendor's flow: matched by name (exact, normalised) and one mapped by hand.
TENANTS = {
    "connectwise": [("Acme Dental", "exact", "Acme Dental"), ("Globex Corp.", "normalised", "Globex Corporation"),
                    ("Initech", "exact", "Initech")],
    "autotask": [("Acme Corp", "exact", "Acme Corp"), ("Globex Corporation", "exact", "Globex Corporation"),
                 ("Initech, Inc.", "normalised", "Initech")],
    "halo": [("Acme Corporation", "exact", "Acme Corporation"), ("Globex Ltd", "exact", "Globex Ltd"),
             ("Umbrella Corp", "normalised", "Umbrella Corp.")],
}  # fmt: skip
BY_HAND = {"connectwise": "Client 0042 Pty", "autotask": "Customer 0042", "halo": "Customer 0042 Pty"}
PICKLIST = {"connectwise": "boards", "autotask": "queues", "halo": "ticket_types"}
SECRET_FIELD = {"connectwise": "private_key", "autotask": "secret", "halo": "client_secret"}
AUTH_HINT = {
    "connectwise": "Verify Company ID, Site URL, Public and Private keys",
    "autotask": "Re-enter the Username, Password, and Tracking Identifier.",
    "halo": "Verify Tenant, Resource Server (without /api), Client ID, and Client Secret.",
}


class RecordingApi:
    """An API client of account A's admin that keeps every answer's body for the secrets sweep."""

    def __init__(self, client, bodies: list[str]):
        self.client = client
        self.bodies = bodies

    def _call(self, method: str, path: str, data=None):
        send = getattr(self.client, method)
        response = send(f"/api/v1/{path}") if data is None else send(f"/api/v1/{path}", data, format="json")
        self.bodies.append(response.content.decode())
        return response

    def get(self, path):
        return self._call("get", path)

    def put(self, path, data):
        return self._call("put", path, data)

    def post(self, path, data=None):
        return self._call("post", path, data if data is not None else {})

    def delete(self, path):
        return self._call("delete", path)

    def connection(self) -> dict:
        response = self.get("connection")
        assert response.status_code == 200, response.content
        return response.json()

    def wait_status(self, wanted: str, worker, timeout: float = 30) -> dict:
        def reached():
            body = self.connection()
            if body["status"] == "failed" and wanted != "failed":
                pytest.fail(f"verification failed: {body['last_error']}\n{worker.log_tail()}")
            return body if body["status"] == wanted else None

        return wait_for(reached, f"connection status {wanted!r}", worker, timeout)


@pytest.fixture
def seen_bodies() -> list[str]:
    return []


@pytest.fixture
def api(api_for, personas, seen_bodies) -> RecordingApi:
    return RecordingApi(api_for(personas.account_a), seen_bodies)


@pytest.fixture(autouse=True)
def no_secret_anywhere(db, psas, seen_bodies):
    """After each test: no secret of any fake in any log row, connection row or API answer.
    (`db` is the transactional database when the test asks for it.)"""
    yield
    assert_no_secret_recorded(psas.secrets(), seen_bodies)


# --- the flow, for each vendor ---------------------------------------------------------------------


@pytest.mark.parametrize("vendor", VENDORS)
def test_link_check_import_map_pause_update_and_remove(
    vendor, worker_process, transactional_db, personas, psas, api, page_client
):
    account = personas.account_a
    tenants = {name: make_tenant(account, name=name, external_id=f"{vendor}-{n}")
               for n, (name, _, _) in enumerate(TENANTS[vendor])}  # fmt: skip
    by_hand = make_tenant(account, name="Contoso", external_id=f"{vendor}-contoso")
    values = psas.link_values(vendor)
    secret_name = SECRET_FIELD[vendor]

    # Link: saved, secrets write-only, verification queued; the worker connects.
    response = api.put("connection", {"vendor": vendor, "credentials": values})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "verifying"
    assert body["secrets"][secret_name] == "set"
    if vendor == "halo":
        assert body["config"]["resource_server"] == psas.halo.url, "the trailing /api is stripped"
    connected = api.wait_status("connected", worker_process)
    assert connected["verified_at"] and connected["last_error"] == ""
    if vendor == "autotask":
        assert connected["config"]["zone_url"] == psas.autotask.zone_url, "the zone comes from discovery"
    if vendor == "connectwise":
        assert connected["config"]["codebase"] == psas.connectwise.codebase

    # Check permissions: one refused in the PSA comes back in words.
    expected = psas.deny_one_permission(vendor)
    response = api.post("connection/permissions")
    assert response.status_code == 202 and response.json()["queued"] is True
    report = wait_for(
        lambda: (r := api.get("connection/permissions").json())["checked_at"] and r,
        "the permission report",
        worker=worker_process,
    )
    assert report["ok"] is False
    messages = [check["message"] for check in report["missing"]]
    assert len(report["missing"]) == 1 and messages[0].startswith(expected), messages
    assert report["missing"][0]["fix"]
    psas.allow_all()

    # A picklist: ?refresh=1 queues a refresh, the page-side read never waits on the PSA.
    kind = PICKLIST[vendor]
    response = api.get(f"connection/picklists/{kind}?refresh=1")
    assert response.status_code == 200 and response.json()["refreshing"] is True
    listed = wait_for(
        lambda: (r := api.get(f"connection/picklists/{kind}").json())["items"] and r,
        f"the {kind} list",
        worker=worker_process,
    )
    assert listed["fetched_at"] and listed["error"] == ""

    # Import customers through the page, then map by suggestion and by hand.
    client = page_client(personas.admin)
    response = client.post("/settings/integrations/import/")
    assert response.status_code == 302
    connection = Connection.objects.get(account=account)
    wait_for(lambda: Connection.objects.get(pk=connection.pk).companies_imported_at, "the import", worker=worker_process)
    imported = PsaCompany.objects.filter(connection=connection, active=True)
    assert imported.count() > 300, "every page of companies is imported"
    companies = api.get("connection/picklists/companies").json()["items"]
    assert len(companies) == PsaCompany.objects.filter(connection=connection).count()

    rows = services.mapping_rows(account, connection, list(tenants.values()))
    for row, (name, how, company) in zip(rows, TENANTS[vendor], strict=True):
        assert (row["suggestion"].name if row["suggestion"] else None, row["how"]) == (company, how), name
        response = api.put(f"tenants/{row['tenant'].external_id}/company", {"company_id": row["suggestion"].company_id})
        assert response.status_code == 200 and response.json()["company_name"] == company
    hand_picked = imported.get(name=BY_HAND[vendor])
    response = api.put(f"tenants/{by_hand.external_id}/company", {"company_id": hand_picked.company_id})
    assert response.status_code == 200 and response.json()["company_name"] == BY_HAND[vendor]
    assert api.put(f"tenants/{by_hand.external_id}/company", {"company_id": "999999999"}).status_code == 400
    assert api.get(f"tenants/{by_hand.external_id}/company").json()["company_id"] == hand_picked.company_id
    assert CompanyMapping.objects.for_account(account).count() == 4

    # Pause: imports are skipped (and logged as such); resume.
    assert api.post("connection/pause").json()["paused"] is True
    client.post("/settings/integrations/import/")
    wait_for(
        lambda: IntegrationLog.objects.for_account(account).filter(action="import.companies", outcome="skipped").exists(),
        "the skipped import",
        worker=worker_process,
    )
    assert api.post("connection/resume").json()["paused"] is False

    # Update the credentials without the secret: the stored one is kept, verification runs again.
    wait_until_idle(psas, vendor, account)
    verified_before = Connection.objects.get(pk=connection.pk).verified_at
    assert verified_before is not None
    kept = {k: v for k, v in values.items() if k != secret_name}
    if vendor == "autotask":
        kept.pop("integration_code")
    response = api.put("connection", {"vendor": vendor, "credentials": kept})
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "verifying"
    api.wait_status("connected", worker_process)
    assert Connection.objects.get(pk=connection.pk).verified_at > verified_before, "verified again"
    assert CompanyMapping.objects.for_account(account).count() == 4, "updating credentials keeps the mappings"

    # Remove: credentials, mappings and cached PSA data go; the log keeps a record.
    wait_until_idle(psas, vendor, account)
    assert api.delete("connection").status_code == 204
    assert api.get("connection").status_code == 404
    assert not Connection.objects.filter(account=account).exists()
    assert not CompanyMapping.objects.for_account(account).exists()
    assert not PsaCompany.objects.exists() and not Picklist.objects.exists()
    assert IntegrationLog.objects.for_account(account).filter(action="connection.remove").exists()

    assert_every_request_logged(psas, vendor, account, worker_process)


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", VENDORS)
def test_wrong_keys_fail_with_what_to_recheck(vendor, worker_process, transactional_db, personas, psas, api):
    wrong = "Wrong-Secret-Value-0042"
    values = {**psas.link_values(vendor), SECRET_FIELD[vendor]: wrong}
    assert api.put("connection", {"vendor": vendor, "credentials": values}).status_code == 202

    failed = api.wait_status("failed", worker_process)
    assert failed["last_error"].startswith("Authentication failed: "), failed["last_error"]
    assert AUTH_HINT[vendor] in failed["last_error"]
    log = IntegrationLog.objects.for_account(personas.account_a)
    assert log.filter(action="connection.verify", outcome="error", http_method="").exists()
    assert 401 in set(log.values_list("http_status", flat=True))
    for row in log:
        assert wrong not in f"{row.message}{row.http_path}{row.request_excerpt}{row.response_excerpt}"
    assert_every_request_logged(psas, vendor, personas.account_a, worker_process)


def test_revoked_keys_are_reported_on_the_next_verification(worker_process, transactional_db, personas, psas, api):
    assert api.put("connection", {"vendor": "connectwise", "credentials": psas.link_values("connectwise")}).status_code == 202
    api.wait_status("connected", worker_process)
    wait_until_idle(psas, "connectwise", personas.account_a)

    psas.connectwise.revoke()
    assert api.post("connection/verify").status_code == 202
    failed = api.wait_status("failed", worker_process)
    assert failed["last_error"].startswith("Authentication failed: Verify Company ID, Site URL, Public and Private keys.")
    assert_every_request_logged(psas, "connectwise", personas.account_a, worker_process)


def _link_in_process(psas, api, vendor: str, **changed) -> Connection:
    """Link the fake with `changed` values through the API, without a worker: the `db` fixture
    never commits, so nothing is queued; the test runs the verification task in this process."""
    values = {**psas.link_values(vendor), **changed}
    response = api.put("connection", {"vendor": vendor, "credentials": values})
    assert response.status_code == 202, response.content
    return Connection.objects.get(vendor=vendor)


def _last_verification(connection: Connection) -> Connection:
    """The verification task's final attempt, run here: its error is what the page shows."""
    tasks.verify_connection.apply(args=[str(connection.pk), "test"], retries=tasks.VERIFY_RETRIES, throw=True)
    return Connection.objects.get(pk=connection.pk)


@pytest.mark.parametrize(
    "vendor, field, host_url",
    [("halo", "resource_server", "https://127.0.0.1:{port}"), ("connectwise", "site", "http://127.0.0.1:{port}"),
     ("halo", "resource_server", "https://10.1.2.3"), ("connectwise", "site", "https://localhost:{port}")],
)  # fmt: skip
def test_a_private_host_is_refused_without_the_setting(vendor, field, host_url, db, personas, psas, api, settings):
    """Typed as an address or a local name, the host is refused before anything is saved."""
    settings.PSA_ALLOW_PRIVATE_HOSTS = False
    values = {**psas.link_values(vendor), field: host_url.format(port=getattr(psas, vendor).port)}

    response = api.put("connection", {"vendor": vendor, "credentials": values})

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert f"credentials.{field}" in error["fields"]
    assert "The hub only connects to PSAs on public internet addresses" in error["message"] or "local network name" in error["message"]
    assert not Connection.objects.exists()
    assert not psas.requests_seen(vendor), "nothing was sent to the private host"


def test_a_stored_private_host_is_refused_when_the_hub_connects(db, personas, psas, api, settings):
    """Linked while the setting was on, then turned off: the guard at connect time still holds."""
    connection = _link_in_process(psas, api, "halo")
    settings.PSA_ALLOW_PRIVATE_HOSTS = False

    connection = _last_verification(connection)

    assert connection.status == "failed"
    # The fake speaks plain http on loopback: refused for the scheme before the address is looked at.
    assert connection.last_error == "127.0.0.1 must be reached over https."
    assert not psas.requests_seen("halo"), "nothing was sent to the private host"


def test_an_unknown_host_name_says_to_check_the_url(db, personas, psas, api, settings):
    settings.PSA_ALLOW_PRIVATE_HOSTS = False
    connection = _link_in_process(psas, api, "halo", resource_server="https://acme.halopsa.invalid")

    connection = _last_verification(connection)

    assert connection.status == "failed"
    assert connection.last_error == "Could not find the host acme.halopsa.invalid: check the region/URL for typing mistakes."


def test_a_host_name_that_does_not_resolve_with_private_hosts_allowed(db, personas, psas, api, monkeypatch):
    monkeypatch.setattr("integrations.base.client.HttpClient._backoff", lambda self, attempt: 0.01)
    connection = _link_in_process(psas, api, "halo", resource_server="http://acme.halopsa.invalid")

    connection = _last_verification(connection)

    assert connection.status == "failed"
    assert connection.last_error.startswith(
        "Could not reach Halo PSA at acme.halopsa.invalid: the host name could not be found. Check the region/URL"
    ), connection.last_error


def test_a_timeout_says_could_not_reach(db, personas, psas, api, settings, monkeypatch):
    settings.PSA_HTTP_TIMEOUT = 0.3
    monkeypatch.setattr("integrations.base.client.HttpClient._backoff", lambda self, attempt: 0.01)
    psas.not_a_psa.mode = "hang"
    psas.not_a_psa.hang_seconds = 2
    connection = _link_in_process(psas, api, "connectwise", site=psas.not_a_psa.url)

    started = time.monotonic()
    connection = _last_verification(connection)

    assert connection.status == "failed"
    assert connection.last_error.startswith(
        "Could not reach ConnectWise at 127.0.0.1: the connection timed out. Check the region/URL"
    ), connection.last_error
    assert len(psas.not_a_psa.requests) == 4, "a read timeout of a GET is retried inline three times"
    assert time.monotonic() - started < 5
    rows = IntegrationLog.objects.for_account(personas.account_a).exclude(http_method="")
    assert rows.count() == 4 and set(rows.values_list("http_status", flat=True)) == {None}


@pytest.mark.parametrize(
    "vendor, field, mode, words",
    [("connectwise", "site", "html", "ConnectWise answered with a web page (HTTP 200) instead of API data."),
     ("connectwise", "site", "bad-json", "ConnectWise answered with something that is not JSON (HTTP 200)"),
     ("halo", "resource_server", "html", "answered with a web page (HTTP 200) instead of API data."),
     ("halo", "resource_server", "bad-json", "answered with something that is not JSON (HTTP 200)")],
)  # fmt: skip
def test_html_or_invalid_json_instead_of_the_api(vendor, field, mode, words, db, personas, psas, api):
    psas.not_a_psa.mode = mode
    connection = _link_in_process(psas, api, vendor, **{field: psas.not_a_psa.url})

    connection = _last_verification(connection)

    assert connection.status == "failed"
    assert words in connection.last_error, connection.last_error
    assert "Check th" in connection.last_error and "URL" in connection.last_error, "it says which value to re-check"
    assert "<html" not in connection.last_error.lower()


def test_html_while_verifying_is_shown_while_the_worker_retries(worker_process, transactional_db, personas, psas, api):
    """Verification keeps trying for minutes (ConnectWise may take 1–2 to confirm); meanwhile the
    status says why the last attempt failed instead of only "Verifying…"."""
    values = {**psas.link_values("connectwise"), "site": psas.not_a_psa.url}
    assert api.put("connection", {"vendor": "connectwise", "credentials": values}).status_code == 202

    body = wait_for(
        lambda: (r := api.connection())["last_error"] and r, "the reason of the failed attempt", worker=worker_process
    )
    assert body["status"] == "verifying"
    assert body["last_error"].startswith("ConnectWise answered with a web page (HTTP 200) instead of API data."), body
    assert api.delete("connection").status_code == 204


def test_a_429_storm_backs_off_and_finishes(worker_process, transactional_db, personas, psas, api, page_client):
    account = personas.account_a
    assert api.put("connection", {"vendor": "autotask", "credentials": psas.link_values("autotask")}).status_code == 202
    api.wait_status("connected", worker_process)
    wait_until_idle(psas, "autotask", account)

    at = psas.autotask
    at.reset_log()
    at.inject(429, times=6, retry_after="1", entity="Companies")
    started = time.monotonic()
    assert page_client(personas.admin).post("/settings/integrations/import/").status_code == 302
    connection = Connection.objects.get(account=account)
    wait_for(lambda: Connection.objects.get(pk=connection.pk).companies_imported_at, "the import", worker_process, 40)
    took = time.monotonic() - started

    assert PsaCompany.objects.filter(connection=connection).count() > 600
    refused = [r for r in at.requests_to("Companies") if r.status == 429]
    assert len(refused) == 6
    gaps = [b.started - a.started for a, b in zip(refused, refused[1:])]
    assert min(gaps) >= 0.9, f"Retry-After: 1 is honoured between attempts: {gaps}"
    assert took < 30
    assert at.refused_for_threads == 0 and max(at.max_concurrency.values()) <= at.thread_limit
    logged = IntegrationLog.objects.for_account(account).filter(http_status=429)
    assert logged.count() == 6
    assert not IntegrationLog.objects.for_account(account).filter(action="import.companies", outcome="error", http_method="")
