"""The "Link Autotask" form: fields, help texts from seed 001, secrets kept on update."""

from __future__ import annotations

from integrations.autotask.forms import AutotaskLinkForm

VALUES = {"username": " hubapi@acme-msp.example ", "secret": "Pa55word!", "integration_code": " ABCDEFGHIJKLMNOPQRSTUVWXYZ1 "}


def test_fields_labels_and_help():
    form = AutotaskLinkForm()
    assert [(name, f.label) for name, f in form.fields.items()] == [
        ("username", "Username"),
        ("secret", "Password"),
        ("integration_code", "Tracking Identifier"),
    ]
    assert "Admin → Resources (Users) → New API User" in form.fields["username"].help_text
    assert "“Custom (Internal Integration)”" in form.fields["integration_code"].help_text


def test_config_and_secrets_split():
    form = AutotaskLinkForm(data=VALUES)
    assert form.is_valid(), form.errors
    assert form.config_and_secrets() == (
        {"username": "hubapi@acme-msp.example"},
        {"secret": "Pa55word!", "integration_code": "ABCDEFGHIJKLMNOPQRSTUVWXYZ1"},
    )


def test_all_fields_required_on_first_link():
    form = AutotaskLinkForm(data={"username": "", "secret": "", "integration_code": ""})
    assert not form.is_valid()
    assert set(form.errors) == {"username", "secret", "integration_code"}


def test_blank_secrets_keep_the_stored_ones_on_update():
    form = AutotaskLinkForm(
        data={"username": "new-api@acme-msp.example", "secret": "", "integration_code": ""},
        existing_secrets={"secret", "integration_code"},
    )
    assert form.is_valid(), form.errors
    assert form.config_and_secrets() == ({"username": "new-api@acme-msp.example"}, {})
    assert "Leave blank to keep the saved value." in form.fields["secret"].help_text


def test_secrets_are_never_rendered_back():
    form = AutotaskLinkForm(data={**VALUES, "username": "has space"})
    assert not form.is_valid()
    html = form.as_p()
    assert "Pa55word!" not in html and "ABCDEFGHIJKLMNOPQRSTUVWXYZ1" not in html
    assert 'type="password"' in html
    assert "no spaces" in str(form.errors["username"])
