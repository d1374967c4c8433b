"""ConnectWiseLinkForm: a region or a typed site, normalised; bad input named with its fix;
a blank Private Key on an update keeps the stored one."""

from __future__ import annotations

import pytest

from integrations.connectwise.forms import ConnectWiseLinkForm

VALID = {
    "company_id": "acme",
    "region": "",
    "site": "",
    "public_key": "PubKeyA1b2C3d4E5",
    "private_key": "Pr1vateKeySecretZq",
}


def form(existing=(), allow_http=False, **data):
    return ConnectWiseLinkForm({**VALID, **data}, existing_secrets=set(existing), allow_private=allow_http)


@pytest.mark.parametrize(
    "region, site, api_host",
    [
        ("na", "na.myconnectwise.net", "api-na.myconnectwise.net"),
        ("eu", "eu.myconnectwise.net", "api-eu.myconnectwise.net"),
        ("aus", "aus.myconnectwise.net", "api-aus.myconnectwise.net"),
        ("au", "au.myconnectwise.net", "api-au.myconnectwise.net"),
        ("staging", "staging.connectwisedev.com", "api-staging.connectwisedev.com"),
    ],
)
def test_a_region_gives_the_site_and_its_api_host(region, site, api_host):
    f = form(region=region)
    assert f.is_valid(), f.errors
    config, secrets = f.config_and_secrets()
    assert config == {
        "company_id": "acme",
        "site": site,
        "api_host": api_host,
        "region": region,
        "public_key": "PubKeyA1b2C3d4E5",
        "scheme": "https",
        "codebase": "",
    }
    assert secrets == {"private_key": "Pr1vateKeySecretZq"}
    assert f.api_url == f"https://{api_host}" and f.site_url == f"https://{site}"


@pytest.mark.parametrize(
    "typed, site, api_host",
    [
        ("mycompany.connectwise.com", "mycompany.connectwise.com", "mycompany.connectwise.com"),
        ("  https://MyCompany.ConnectWise.com/  ", "mycompany.connectwise.com", "mycompany.connectwise.com"),
        ("https://na.myconnectwise.net/v4_6_release/ConnectWise.aspx?locale=en_US#x", "na.myconnectwise.net",
         "api-na.myconnectwise.net"),
        ("https://api-eu.myconnectwise.net", "eu.myconnectwise.net", "api-eu.myconnectwise.net"),
        ("api-aus.myconnectwise.net/", "aus.myconnectwise.net", "api-aus.myconnectwise.net"),
        ("za.myconnectwise.net", "za.myconnectwise.net", "api-za.myconnectwise.net"),
        ("http://cw.example.com", "cw.example.com", "cw.example.com"),
        ("cw.example.com:443", "cw.example.com", "cw.example.com"),
        ("https://cw.example.com:8443/login", "cw.example.com:8443", "cw.example.com:8443"),
        ("STAGING.connectwisedev.com.", "staging.connectwisedev.com", "api-staging.connectwisedev.com"),
    ],
)  # fmt: skip
def test_a_typed_site_is_normalised(typed, site, api_host):
    f = form(site=typed)
    assert f.is_valid(), f.errors
    config, _ = f.config_and_secrets()
    assert (config["site"], config["api_host"], config["scheme"]) == (site, api_host, "https")


def test_http_is_kept_only_for_local_fakes():
    f = form(site="http://127.0.0.1:8123", allow_http=True)
    assert f.is_valid(), f.errors
    config, _ = f.config_and_secrets()
    assert (config["site"], config["api_host"], config["scheme"]) == ("127.0.0.1:8123", "127.0.0.1:8123", "http")
    assert f.site_url == "http://127.0.0.1:8123"


def test_a_region_and_the_same_site_typed_agree():
    f = form(region="na", site="https://na.myconnectwise.net/")
    assert f.is_valid(), f.errors


@pytest.mark.parametrize(
    "data, field, words",
    [
        ({"site": "my company.connectwise.com"}, "site", "cannot contain spaces"),
        (
            {"site": "na.myconnectwise.net:8443"},
            "site",
            "do not use a port: enter na.myconnectwise.net without “:8443”",
        ),
        ({"site": "cw.example.com:http"}, "site", "is not a number"),
        ({"site": "ftp://cw.example.com"}, "site", "web address (https)"),
        ({"site": "mycompany"}, "site", "full host name"),
        ({"site": "https://admin@cw.example.com"}, "site", "without a user name"),
        ({"site": "cw_example!.com"}, "site", "not a valid host name"),
        ({"site": ""}, "site", "Choose your region, or choose “Other”"),
        ({"region": "mars"}, "region", "Unknown region “mars”. Choose North America, Europe, Australia"),
        ({"region": "eu", "site": "na.myconnectwise.net"}, "site", "is not the Europe site"),
        ({"company_id": "my company"}, "company_id", "without spaces"),
        ({"company_id": "acme+x"}, "company_id", "“+”"),
        ({"company_id": ""}, "company_id", "required"),
        ({"public_key": "abc def"}, "public_key", "copy it again"),
        ({"public_key": ""}, "public_key", "required"),
        ({"private_key": ""}, "private_key", "required"),
    ],
)
def test_bad_input_names_the_fix(data, field, words):
    f = form(**({"region": "na"} if "region" not in data and "site" not in data else {}), **data)
    assert not f.is_valid()
    assert words in " ".join(f.errors[field]), f.errors


def test_everything_blank():
    f = ConnectWiseLinkForm({}, existing_secrets=set())
    assert not f.is_valid()
    assert set(f.errors) == {"company_id", "site", "public_key", "private_key"}


def test_a_blank_private_key_keeps_the_stored_one():
    f = form(existing={"private_key"}, region="na", private_key="")
    assert f.is_valid(), f.errors
    config, secrets = f.config_and_secrets()
    assert secrets == {}
    assert "Leave blank to keep the stored Private Key." in f.fields["private_key"].help_text


def test_the_private_key_is_never_rendered_back():
    f = form(region="na", company_id="")
    assert not f.is_valid()
    assert "Pr1vateKeySecretZq" not in f.as_p()
    assert 'type="password"' in str(f["private_key"])


def test_a_stored_cloud_site_shows_as_its_region():
    f = ConnectWiseLinkForm(
        initial={"site": "eu.myconnectwise.net", "company_id": "acme"}, existing_secrets={"private_key"}
    )
    assert f.initial["region"] == "eu" and f.initial["site"] == ""
    custom = ConnectWiseLinkForm(initial={"site": "cw.example.com"}, existing_secrets={"private_key"})
    assert custom.initial["site"] == "cw.example.com" and "region" not in custom.initial


def test_a_stored_http_site_is_shown_with_its_scheme_so_an_update_keeps_it():
    stored = {"company_id": "acme", "site": "127.0.0.1:8123", "scheme": "http", "public_key": "PubKeyA1b2C3d4E5"}
    shown = ConnectWiseLinkForm(initial=stored, existing_secrets={"private_key"}, allow_private=True)
    assert shown.initial["site"] == "http://127.0.0.1:8123"
    resaved = form(existing={"private_key"}, allow_http=True, site=shown.initial["site"], private_key="")
    assert resaved.is_valid(), resaved.errors
    config, secrets = resaved.config_and_secrets()
    assert config["scheme"] == "http" and config["site"] == "127.0.0.1:8123" and secrets == {}


def test_help_texts_say_where_to_find_each_value():
    f = ConnectWiseLinkForm(existing_secrets=set())
    assert "login screen" in f.fields["company_id"].help_text
    assert "System > Members > API Members" in f.fields["public_key"].help_text
    assert "shown only once" in f.fields["private_key"].help_text
    assert "mycompany.connectwise.com" in f.fields["site"].help_text
