"""The "Link Autotask" form: the three values seed 001 has the MSP create on an API user."""

from __future__ import annotations

from django import forms

SECRET_FIELDS = ("secret", "integration_code")
KEEP = "Leave blank to keep the saved value."


class AutotaskLinkForm(forms.Form):
    username = forms.CharField(
        label="Username",
        max_length=254,
        help_text=(
            "The Username of the Autotask API user: in Autotask, Admin → Resources (Users) → New API User "
            "(Security Level “API User (system)”), General section."
        ),
    )
    secret = forms.CharField(
        label="Password",
        max_length=256,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The Password generated for that API user when you created it (Autotask calls it the Secret).",
    )
    integration_code = forms.CharField(
        label="Tracking Identifier",
        max_length=64,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=(
            "The API Tracking Identifier of the API user: choose “Custom (Internal Integration)” and copy the "
            "generated identifier."
        ),
    )

    def __init__(
        self, *args, existing_secrets: set[str] | frozenset[str] = frozenset(), allow_private: bool = False, **kwargs
    ):
        # allow_private is for forms with user-typed hosts; Autotask's zone is discovered.
        super().__init__(*args, **kwargs)
        self.existing_secrets = set(existing_secrets)
        for name in SECRET_FIELDS:
            if name in self.existing_secrets:
                # Updating the username alone must not force re-typing what is stored.
                self.fields[name].required = False
                self.fields[name].help_text = f"{self.fields[name].help_text} {KEEP}"

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        if any(ch.isspace() for ch in username):
            raise forms.ValidationError("The Username has no spaces; copy it again from the API user in Autotask.")
        return username

    def clean_integration_code(self) -> str:
        code = self.cleaned_data.get("integration_code", "").strip()
        if any(ch.isspace() for ch in code):
            raise forms.ValidationError("The Tracking Identifier has no spaces; copy it again from the API user.")
        return code

    def config_and_secrets(self) -> tuple[dict, dict]:
        """(config, secrets) for the connection. A blank secret is left out: the stored one stays.

        The Username is config, shown on the page: on its own it grants nothing (zone discovery
        takes it without authentication), and the admin needs to see which API user is linked
        to find it in Autotask when it gets locked or needs another security level. The
        Password and the Tracking Identifier together authenticate, so both are secret.
        """
        data = self.cleaned_data
        config = {"username": data["username"]}
        secrets = {name: data[name] for name in SECRET_FIELDS if data.get(name)}
        return config, secrets
