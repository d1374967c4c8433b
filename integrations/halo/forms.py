"""The "Link Halo PSA" form: the values seed 002 has the MSP copy from Halo."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from django import forms

SECRET_FIELDS = ("client_secret",)
KEEP = "Leave blank to keep the saved value."
# Hosts of the local fake PSAs. Plain http is accepted for them only; the network guard still
# refuses them unless PSA_ALLOW_PRIVATE_HOSTS is set, so production stays https-only.
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")


def _split_url(value: str, what: str, *, allow_http: bool) -> tuple[str, str, str]:
    """(scheme, netloc, path) of a typed URL: whitespace removed, https added when missing."""
    value = value.strip()
    if any(ch.isspace() for ch in value):
        raise forms.ValidationError(f"The {what} has no spaces; copy it again from Halo.")
    if "://" not in value:
        value = "https://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise forms.ValidationError(f"Enter the {what} as Halo shows it, e.g. https://yourcompany.halopsa.com.") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http"):
        raise forms.ValidationError(f"The {what} must start with https://.")
    if parts.scheme == "http" and not (allow_http or host in _LOOPBACK_HOSTS):
        raise forms.ValidationError(f"The {what} must use https://; Halo's cloud and on-premise API need it.")
    if parts.username or parts.password:
        raise forms.ValidationError(f"The {what} cannot contain a user name or password.")
    if not host or not (_HOST.match(host) or host in _LOOPBACK_HOSTS):
        raise forms.ValidationError(f"Enter the {what} as Halo shows it, e.g. https://yourcompany.halopsa.com.")
    if parts.query or parts.fragment:
        raise forms.ValidationError(f"The {what} has no ?query or #fragment; copy it again from Halo.")
    netloc = host if port is None else f"{host}:{port}"
    if ":" in host:
        netloc = f"[{host}]" + ("" if port is None else f":{port}")
    return parts.scheme, netloc, parts.path


def normalise_resource_server(value: str, *, allow_http: bool = False) -> str:
    """'  acme.halopsa.com/api/ ' -> 'https://acme.halopsa.com' (seed 002: omit the trailing /api)."""
    scheme, netloc, path = _split_url(value, "Resource Server URL", allow_http=allow_http)
    path = path.rstrip("/")
    if path.lower().endswith("/api"):
        path = path[: -len("/api")].rstrip("/")
    if path:
        raise forms.ValidationError(
            f"Enter only the server address, without {path}: e.g. https://yourcompany.halopsa.com "
            "(Halo shows it with /api, which the hub adds itself)."
        )
    return urlunsplit((scheme, netloc, "", "", ""))


def normalise_auth_server(value: str, *, allow_http: bool = False) -> str:
    """'https://acme.halopsa.com/auth/token/' -> 'https://acme.halopsa.com/auth'."""
    scheme, netloc, path = _split_url(value, "Authorisation Server URL", allow_http=allow_http)
    path = path.rstrip("/")
    if path.lower().endswith("/token"):
        path = path[: -len("/token")]
    return urlunsplit((scheme, netloc, path, "", ""))


class HaloLinkForm(forms.Form):
    tenant = forms.CharField(
        label="Tenant",
        max_length=100,
        required=False,
        help_text=(
            "In Halo, Configuration → Integrations → HaloPSA API: copy the Tenant. Leave blank for an on-premise "
            "Halo, which has none."
        ),
    )
    resource_server = forms.CharField(
        label="Resource Server URL",
        max_length=300,
        error_messages={"required": "Enter the Resource Server shown in Halo under Configuration → Integrations → HaloPSA API."},
        help_text=(
            "On the same page: the Resource Server, e.g. https://yourcompany.halopsa.com. Omit the trailing /api "
            "if present."
        ),
    )
    auth_server = forms.CharField(
        label="Authorisation Server URL",
        max_length=300,
        required=False,
        help_text=(
            "Optional. Leave blank to use the Resource Server followed by /auth, as Halo sets it up; fill it in only "
            "if Halo shows a different Authorisation Server there."
        ),
    )
    client_id = forms.CharField(
        label="Client ID",
        max_length=200,
        error_messages={"required": "Enter the Client ID of the API application you created in Halo."},
        help_text=(
            "Configuration → Integrations → HaloPSA API → View Applications → your application (Authentication "
            "Method “Client ID and Secret (Services)”, Login Type Agent, logging in as the API-only agent)."
        ),
    )
    client_secret = forms.CharField(
        label="Client Secret",
        max_length=500,
        error_messages={"required": "Enter the Client Secret of the API application (Halo shows it once, when it is created)."},
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=(
            "Shown once, when the application is created. If it was not saved, generate a new one in the "
            "application and paste it here."
        ),
    )

    def __init__(
        self,
        *args,
        existing_secrets: set[str] | frozenset[str] = frozenset(),
        allow_private: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.existing_secrets = set(existing_secrets)
        # With PSA_ALLOW_PRIVATE_HOSTS (tests, local fakes), plain http is accepted for any host.
        self.allow_http = allow_private
        for name in SECRET_FIELDS:
            if name in self.existing_secrets:
                self.fields[name].required = False
                self.fields[name].help_text = f"{self.fields[name].help_text} {KEEP}"

    def clean_tenant(self) -> str:
        tenant = self.cleaned_data.get("tenant", "").strip()
        if any(ch.isspace() for ch in tenant) or "/" in tenant:
            raise forms.ValidationError("The Tenant is one word, as Halo shows it (not a URL).")
        return tenant

    def clean_resource_server(self) -> str:
        return normalise_resource_server(self.cleaned_data.get("resource_server", ""), allow_http=self.allow_http)

    def clean_auth_server(self) -> str:
        value = self.cleaned_data.get("auth_server", "").strip()
        return normalise_auth_server(value, allow_http=self.allow_http) if value else ""

    def clean_client_id(self) -> str:
        client_id = self.cleaned_data.get("client_id", "").strip()
        if any(ch.isspace() for ch in client_id):
            raise forms.ValidationError("The Client ID has no spaces; copy it again from the application in Halo.")
        return client_id

    def clean_client_secret(self) -> str:
        secret = self.cleaned_data.get("client_secret", "").strip()
        if any(ch.isspace() for ch in secret):
            raise forms.ValidationError("The Client Secret has no spaces; copy it again, or generate a new one.")
        return secret

    def clean(self):
        data = super().clean()
        resource, auth = data.get("resource_server"), data.get("auth_server")
        # The documented default is stored as blank, so AuthInfo discovery and later moves follow Halo.
        if resource and auth and auth == resource + "/auth":
            data["auth_server"] = ""
        return data

    def config_and_secrets(self) -> tuple[dict, dict]:
        """(config, secrets). A blank secret is left out, so the stored one stays.

        The Client ID is config, shown on the page: without the secret it grants nothing, and
        the admin needs it to find the application in Halo. The Client Secret is the credential.
        """
        data = self.cleaned_data
        config = {
            "tenant": data["tenant"],
            "resource_server": data["resource_server"],
            "auth_server": data["auth_server"],
            "client_id": data["client_id"],
        }
        secrets = {name: data[name] for name in SECRET_FIELDS if data.get(name)}
        return config, secrets
