"""The ConnectWise link form: Company ID, site (a region or a typed site URL), and the API keys.

Format checks only. Whether the host may be called (public address, https) is the service
layer's call with integrations.base.netguard, on `site_url` and `api_url`.
"""

from __future__ import annotations

import re

from django import forms

from integrations.connectwise import parse

_BAD_ID_CHARACTERS = re.compile(r"[\s:/+?#\\@]")

REGION_ERROR = (
    "Unknown region “%(value)s”. Choose North America, Europe, Australia, South Africa or Staging, or choose "
    "“Other” and enter your site URL."
)


class ConnectWiseLinkForm(forms.Form):
    company_id = forms.CharField(
        label="Company ID",
        max_length=100,
        help_text="The company name you type on the ConnectWise login screen, e.g. mycompany.",
    )
    region = forms.ChoiceField(
        label="Region",
        required=False,
        choices=[("", "Other: enter the site URL below")]
        + [(key, f"{label} ({site})") for key, (label, site) in parse.REGIONS.items()],
        error_messages={"invalid_choice": REGION_ERROR},
        help_text="Where your ConnectWise cloud is hosted. Choose “Other” for an on-premise or custom site.",
    )
    site = forms.CharField(
        label="Site URL",
        required=False,
        max_length=255,
        help_text=(
            "The address you log in to ConnectWise at, e.g. mycompany.connectwise.com or na.myconnectwise.net. "
            "Leave it blank when you chose a region."
        ),
    )
    public_key = forms.CharField(
        label="Public Key",
        max_length=100,
        help_text=(
            "In ConnectWise: System > Members > API Members, open the hub's API Member (with the security role "
            "set up for the hub), API Keys tab, + to generate a key pair."
        ),
    )
    private_key = forms.CharField(
        label="Private Key",
        required=False,
        max_length=100,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Generated with the Public Key and shown only once: copy it right away.",
    )

    def __init__(self, *args, existing_secrets: set[str] | frozenset = frozenset(), allow_private: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.existing_secrets = set(existing_secrets)
        # http:// only for local fake PSAs (the service layer passes PSA_ALLOW_PRIVATE_HOSTS).
        self.allow_http = allow_private
        self.normalised: parse.Site | None = None
        if "private_key" in self.existing_secrets:
            self.fields["private_key"].help_text += " Leave blank to keep the stored Private Key."
        else:
            self.fields["private_key"].required = True
        # Showing a stored cloud site as its region keeps the two fields from disagreeing.
        site = (self.initial or {}).get("site", "")
        if site and not self.initial.get("region") and parse.region_of(site):
            self.initial = {**self.initial, "region": parse.region_of(site), "site": ""}
        elif site and self.initial.get("scheme") == "http":
            # A plain-http site (a local fake PSA) is stored without its scheme; shown bare, it
            # would be saved back as https on "Update credentials" and stop working.
            self.initial = {**self.initial, "site": f"http://{site}"}

    def clean_company_id(self) -> str:
        value = self.cleaned_data["company_id"].strip()
        if _BAD_ID_CHARACTERS.search(value):
            raise forms.ValidationError(
                "Enter the Company ID exactly as on the ConnectWise login screen: one word, without spaces, "
                "slashes, “:” or “+”."
            )
        return value

    def _clean_key(self, name: str, label: str) -> str:
        value = self.cleaned_data.get(name, "").strip()
        if any(ch.isspace() for ch in value):
            raise forms.ValidationError(f"The {label} has no spaces: copy it again from the API Keys tab.")
        return value

    def clean_public_key(self) -> str:
        return self._clean_key("public_key", "Public Key")

    def clean_private_key(self) -> str:
        return self._clean_key("private_key", "Private Key")

    def clean(self):
        cleaned = super().clean()
        if "region" in self.errors:
            return cleaned
        region = cleaned.get("region") or ""
        typed = (cleaned.get("site") or "").strip()
        try:
            if typed:
                site = parse.normalise_site(typed, allow_http=self.allow_http)
            elif region:
                site = parse.site_for_region(region)
            else:
                self.add_error(
                    "site",
                    f"Choose your region, or choose “Other” and enter your ConnectWise site, e.g. {parse.EXAMPLE}.",
                )
                return cleaned
        except parse.SiteError as error:
            self.add_error("site", str(error))
            return cleaned
        if typed and region and site.api_host != parse.site_for_region(region).api_host:
            label = parse.REGIONS[region][0]
            self.add_error(
                "site",
                f"{site.site} is not the {label} site ({parse.REGIONS[region][1]}). Choose “Other” as the region "
                "to use this site, or clear the site URL.",
            )
            return cleaned
        self.normalised = site
        cleaned["site"] = site.site
        return cleaned

    @property
    def site_url(self) -> str:
        """Where login/companyinfo is read (check it with netguard before saving)."""
        return self.normalised.site_url if self.normalised else ""

    @property
    def api_url(self) -> str:
        """Where the REST API is called (check it with netguard before saving)."""
        return self.normalised.api_url if self.normalised else ""

    def config_and_secrets(self) -> tuple[dict, dict]:
        """(shown config, secrets) after is_valid(); a blank Private Key keeps the stored one."""
        if self.normalised is None:
            raise ValueError("config_and_secrets() needs a valid form")
        data = self.cleaned_data
        config = {
            "company_id": data["company_id"],
            "site": self.normalised.site,
            "api_host": self.normalised.api_host,
            "region": parse.region_of(self.normalised.site),
            "public_key": data["public_key"],
            "scheme": self.normalised.scheme,
            # A new site or company may run another codebase; verification finds it again.
            "codebase": "",
        }
        secrets = {"private_key": data["private_key"]} if data.get("private_key") else {}
        return config, secrets
