"""Hosts typed into a link form are checked before anything is saved (no DNS needed)."""

import pytest

from integrations.models import Connection

pytestmark = pytest.mark.django_db


def test_a_private_address_typed_as_the_site_is_refused_beside_the_field(page_client, personas, settings):
    """No DNS needed: a literal private IP or a local name is refused before anything is saved."""
    settings.PSA_ALLOW_PRIVATE_HOSTS = False
    client = page_client(personas.admin)
    for site in ("10.0.0.5", "https://192.168.1.20", "localhost"):
        response = client.post(
            "/settings/integrations/link/connectwise/",
            {"company_id": "acme", "region": "", "site": site, "public_key": "pub", "private_key": "priv"},
        )
        html = response.content.decode()
        assert response.status_code == 200
        host = site.removeprefix("https://")
        refusals = html.count(f"<li>{host} is a private or local network address") + html.count(f"<li>{host} is a local network name")
        assert refusals == 1, site
    assert not Connection.objects.exists()


def test_the_api_names_the_refused_field(api_for, personas, settings):
    settings.PSA_ALLOW_PRIVATE_HOSTS = False
    response = api_for(personas.account_a).put(
        "/api/v1/connection",
        {"vendor": "halo", "credentials": {"tenant": "acme", "resource_server": "https://127.0.0.1/api",
                                            "client_id": "id", "client_secret": "s3cret"}},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "credentials.resource_server" in response.json()["error"]["fields"]
    assert not Connection.objects.exists()


def test_public_names_and_the_setting_let_hosts_through(page_client, personas, settings):
    settings.PSA_ALLOW_PRIVATE_HOSTS = True
    client = page_client(personas.admin)
    response = client.post(
        "/settings/integrations/link/connectwise/",
        {"company_id": "acme", "region": "", "site": "10.0.0.5", "public_key": "pub", "private_key": "priv"},
    )
    assert response.status_code == 302
    assert Connection.objects.filter(vendor="connectwise").exists()
