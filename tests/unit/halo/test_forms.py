"""HaloLinkForm: what an MSP admin types, cleaned into config and secrets (seed 002)."""

from __future__ import annotations

import pytest

from integrations.halo.forms import HaloLinkForm

SECRET = "cl1ent-Secret-9Xy7Wv5Ut3-do-not-leak"


def form(existing_secrets=frozenset(), allow_private=False, **data) -> HaloLinkForm:
    values = {
        "tenant": "acme",
        "resource_server": "https://acme.halopsa.com",
        "auth_server": "",
        "client_id": "5c1d9e2a-hub-client",
        "client_secret": SECRET,
        **data,
    }
    return HaloLinkForm(values, existing_secrets=existing_secrets, allow_private=allow_private)


@pytest.mark.parametrize(
    "typed",
    [
        "https://acme.halopsa.com/api",
        "https://acme.halopsa.com/api/",
        "https://acme.halopsa.com/",
        "  https://acme.halopsa.com/API  ",
        "acme.halopsa.com/api",
        "ACME.HaloPSA.com",
        "https://acme.halopsa.com//api//",
    ],
)
def test_the_resource_server_is_normalised_as_seed_002_says(typed):
    f = form(resource_server=typed)

    assert f.is_valid(), f.errors
    assert f.cleaned_data["resource_server"] == "https://acme.halopsa.com"


def test_a_port_is_kept():
    f = form(resource_server="halo.msp.example:8443/api/")

    assert f.is_valid(), f.errors
    assert f.cleaned_data["resource_server"] == "https://halo.msp.example:8443"


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("http://acme.halopsa.com", "https://"),
        ("ftp://acme.halopsa.com", "https://"),
        ("https://acme.halopsa.com/portal", "without /portal"),
        ("https://acme.halopsa.com/api/Tickets", "without /api/Tickets"),
        ("https://acme.halopsa.com/?tenant=acme", "?query"),
        ("https://user:pw@acme.halopsa.com", "user name or password"),
        ("https://acme halopsa.com", "no spaces"),
        ("https://acme.halopsa.com:99999", "e.g. https://"),
        ("https://", "e.g. https://"),
    ],
)
def test_bad_resource_servers_are_refused_with_what_to_type(typed, says):
    f = form(resource_server=typed)

    assert not f.is_valid()
    assert says in " ".join(f.errors["resource_server"])


def test_http_is_accepted_for_the_local_fakes_and_with_private_hosts_allowed():
    assert form(resource_server="http://127.0.0.1:8766").is_valid()
    assert form(resource_server="http://localhost:8766/api").is_valid()
    assert not form(resource_server="http://halo.lan").is_valid()
    f = form(resource_server="http://halo.lan/api", allow_private=True)
    assert f.is_valid() and f.cleaned_data["resource_server"] == "http://halo.lan"


def test_blank_required_fields_say_where_to_find_them():
    f = form(resource_server="", client_id="", client_secret="")

    assert not f.is_valid()
    assert "Configuration → Integrations → HaloPSA API" in f.errors["resource_server"][0]
    assert "Client ID" in f.errors["client_id"][0]
    assert "Client Secret" in f.errors["client_secret"][0]
    assert "tenant" not in f.errors  # optional: on-premise Halo has none


def test_the_auth_server_defaults_to_blank_and_is_normalised_when_given():
    f = form(auth_server="  https://acme.halopsa.com/auth/ ")
    assert f.is_valid(), f.errors
    assert f.cleaned_data["auth_server"] == ""  # Halo's default: stored blank, derived when used

    f = form(auth_server="login.acme-halo.example/identity/token")
    assert f.is_valid(), f.errors
    assert f.cleaned_data["auth_server"] == "https://login.acme-halo.example/identity"


def test_config_and_secrets_split_what_may_be_shown():
    f = form(tenant=" acme ")
    assert f.is_valid(), f.errors

    config, secrets = f.config_and_secrets()

    assert config == {
        "tenant": "acme",
        "resource_server": "https://acme.halopsa.com",
        "auth_server": "",
        "client_id": "5c1d9e2a-hub-client",
    }
    assert secrets == {"client_secret": SECRET}
    assert SECRET not in repr(config)


def test_a_blank_secret_on_update_keeps_the_stored_one():
    f = form(existing_secrets={"client_secret"}, client_secret="")

    assert f.is_valid(), f.errors
    assert f.config_and_secrets()[1] == {}
    assert "Leave blank to keep" in f.fields["client_secret"].help_text


def test_the_secret_is_never_rendered_back():
    f = form()
    f.is_valid()

    assert SECRET not in str(f["client_secret"])
    assert 'type="password"' in str(f["client_secret"])


def test_tenant_and_client_id_refuse_spaces():
    f = form(tenant="acme halo", client_id="abc def")

    assert not f.is_valid()
    assert set(f.errors) == {"tenant", "client_id"}


def test_help_texts_point_into_halo():
    fields = HaloLinkForm().fields

    assert "Configuration → Integrations → HaloPSA API" in fields["tenant"].help_text
    assert "Omit the trailing /api" in fields["resource_server"].help_text
    assert "View Applications" in fields["client_id"].help_text
    assert "Client ID and Secret (Services)" in fields["client_id"].help_text
    assert [f.label for f in fields.values()] == [
        "Tenant", "Resource Server URL", "Authorisation Server URL", "Client ID", "Client Secret",
    ]
