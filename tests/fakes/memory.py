"""An in-memory PSA for service, page and API tests: no HTTP, fully scripted.

Tests put it in place of a real vendor by patching ``integrations.registry.VENDORS`` (see the
``memory_psa`` fixture in tests/unit/conftest.py) and configure it through the module-level
``state``: the companies and picklists it knows, the permission report, and ``mode``, which
makes every call fail the way a PSA does:

    ok                  everything works
    auth_failed         AuthFailedError (permanent)
    permission_missing  PermissionMissingError (permanent)
    unavailable         UnavailableError (transient: tasks retry it)
    rate_limited        RateLimitedError (transient)
    crash               an unexpected exception whose text holds the secret, as a careless
                        library might raise: the hub must never show or store that text

``failures`` (when set) limits a failing mode to that many calls, after which the PSA
recovers. Each call goes through the transport's limiter and reports a RequestRecord to
``transport.on_request``, so the service layer's request logging runs as it does for real.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from django import forms

from integrations.base.billing import BillingAdapter
from integrations.base.client import RequestRecord, Transport
from integrations.base.errors import (
    AuthFailedError,
    NotFoundError,
    PermissionMissingError,
    RateLimitedError,
    UnavailableError,
)
from integrations.base.provider import (
    Company,
    Contact,
    PermissionCheck,
    PermissionReport,
    PicklistItem,
    Provider,
    VerifyResult,
)
from integrations.base.ticketing import TicketingAdapter

MODES = ("ok", "auth_failed", "permission_missing", "unavailable", "rate_limited", "crash")
PAGE_SIZE = 2  # companies per "page", so a handful of companies makes several requests


def default_report() -> PermissionReport:
    return PermissionReport(
        checks=(
            PermissionCheck("companies", "Companies > Company Maintenance", "sync", True),
            PermissionCheck("service.priority", "Service > Priority", "tickets", True),
            PermissionCheck("service.tickets", "Service > Service Tickets", "tickets", True),
        )
    )


def missing_priority_report() -> PermissionReport:
    """Seed 000's example: the API user cannot read priorities."""
    return PermissionReport(
        checks=(
            PermissionCheck("companies", "Companies > Company Maintenance", "sync", True),
            PermissionCheck(
                "service.priority", "Service > Priority", "tickets", False,
                message="Memory PSA API user does not have permission to access Service > Priority.",
                fix="System > Security Roles > (the API role) > Service Desk > Priority: Inquire Level All.",
            ),
            PermissionCheck("service.tickets", "Service > Service Tickets", "tickets", True),
        )
    )


@dataclass
class MemoryState:
    mode: str = "ok"
    failures: int | None = None  # fail this many calls in `mode`, then recover
    display_name: str = "Memory PSA (acme)"
    config_updates: dict = field(default_factory=lambda: {"codebase": "v2025_1/"})
    companies: list[Company] = field(default_factory=list)
    picklists: dict[tuple[str, str], list[PicklistItem]] = field(default_factory=dict)
    permission_report: PermissionReport = field(default_factory=default_report)
    retry_after: float | None = 7.0
    # What happened: (method name, args) per call, and the secrets each provider was built with.
    calls: list[tuple[str, tuple]] = field(default_factory=list)
    secrets_seen: list[dict] = field(default_factory=list)

    def reset(self) -> None:
        fresh = MemoryState()
        self.__dict__.update(fresh.__dict__)
        self.companies = [
            Company("1", "Acme Corp", identifier="AcmeCorp"),
            Company("2", "Globex, Inc.", identifier="Globex"),
            Company("3", "Initech LLC", identifier="Initech"),
            Company("4", "Umbrella Holdings", identifier="Umbrella"),
            Company("5", "Stark Industries", identifier="Stark"),
        ]
        self.picklists = {
            ("boards", ""): [PicklistItem("1", "Help Desk"), PicklistItem("2", "Projects")],
            ("priorities", ""): [PicklistItem("8", "Priority 1 - Critical"), PicklistItem("9", "Priority 3 - Normal")],
            ("statuses", "1"): [PicklistItem("10", "New", parent_id="1"),
                                PicklistItem("11", "Closed", parent_id="1", extra={"closed": True})],
        }

    def called(self, name: str) -> list[tuple]:
        return [args for method, args in self.calls if method == name]


state = MemoryState()
state.reset()


class MemoryProvider(Provider):
    slug = "memory"
    name = "Memory PSA"
    secret_fields = ("api_key",)
    config_fields = ("site",)
    picklist_kinds = {"boards": None, "priorities": None, "statuses": "board"}

    def __init__(self, config: dict, secrets: dict, transport: Transport | None = None, **extras):
        super().__init__(config, secrets, transport)
        self.extras = extras
        state.secrets_seen.append(dict(secrets))

    # --- the fake wire ------------------------------------------------------------------------

    def _call(self, name: str, path: str, *args) -> None:
        """One pretend request: limiter, log hook, then the failure the mode asks for."""
        state.calls.append((name, args))
        mode = state.mode
        if mode != "ok" and state.failures is not None:
            if state.failures <= 0:
                mode = "ok"
            else:
                state.failures -= 1
        status = {"ok": 200, "auth_failed": 401, "permission_missing": 403, "unavailable": 503,
                  "rate_limited": 429, "crash": None}[mode]
        site = self.config.get("site", "psa.example.com")
        with self.transport.limiter.acquire("all"):
            if self.transport.on_request is not None:
                self.transport.on_request(
                    RequestRecord(
                        method="GET", url=f"https://{site}/api/{path}", path=f"/api/{path}", status=status,
                        duration_ms=3, request_excerpt="",
                        response_excerpt='{"ok": true}' if status == 200 else '{"message": "refused"}',
                        attempt=1, error="RuntimeError" if status is None else "",
                    )
                )
        if mode == "ok":
            return
        if mode == "auth_failed":
            raise AuthFailedError(
                "Authentication failed: re-check the Site and the API key. Memory PSA said: invalid key", status=401
            )
        if mode == "permission_missing":
            raise PermissionMissingError(
                "Memory PSA API user does not have permission to access Service > Priority.",
                which="Service > Priority", fix="Grant Inquire on Service > Priority.", status=403,
            )
        if mode == "unavailable":
            raise UnavailableError(
                f"Could not reach Memory PSA at {site}: the connection timed out. Check the region/URL.", status=503
            )
        if mode == "rate_limited":
            raise RateLimitedError("Memory PSA is limiting requests (HTTP 429); the hub will try again later.",
                                   retry_after=state.retry_after, status=429)
        # "crash": what a careless library might raise, secret and all.
        raise RuntimeError(f"boom while calling {site} with {self.secrets.get('api_key')}")

    # --- Provider ----------------------------------------------------------------------------------

    def verify(self) -> VerifyResult:
        self._call("verify", "system/info")
        return VerifyResult(display_name=state.display_name, config_updates=dict(state.config_updates))

    def check_permissions(self) -> PermissionReport:
        self._call("check_permissions", "security/probe")
        return state.permission_report

    def companies(self, search: str = "") -> Iterator[Company]:
        found = [c for c in state.companies if search.lower() in c.name.lower()]
        for start in range(0, max(len(found), 1), PAGE_SIZE):
            self._call("companies", f"companies?page={start // PAGE_SIZE + 1}", search)
            yield from found[start:start + PAGE_SIZE]

    def contacts(self, company_id: str) -> list[Contact]:
        self._call("contacts", f"companies/{company_id}/contacts", company_id)
        return []

    def picklist(self, kind: str, parent_id: str = "") -> list[PicklistItem]:
        self._call("picklist", f"lists/{kind}?parent={parent_id}", kind, parent_id)
        if kind not in self.picklist_kinds:
            raise NotFoundError(f"Memory PSA has no list {kind!r}.")
        return list(state.picklists.get((kind, parent_id), []))

    def ticketing(self) -> TicketingAdapter:
        raise NotImplementedError("The memory PSA has no tickets.")

    def billing(self) -> BillingAdapter:
        raise NotImplementedError("The memory PSA has no billing.")


class MemoryLinkForm(forms.Form):
    """The link form the real vendor forms follow: shown fields become config, secret fields
    are write-only (a blank one on update keeps the stored value)."""

    site = forms.CharField(label="Site", max_length=200, help_text="Your PSA's host name, e.g. psa.example.com.")
    api_key = forms.CharField(
        label="API key", required=False, strip=True, widget=forms.PasswordInput(render_value=False),
        help_text="Made under Setup > API keys.",
    )

    def __init__(self, *args, existing_secrets=(), allow_private=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.existing_secrets = set(existing_secrets)
        if "api_key" in self.existing_secrets:
            self.fields["api_key"].help_text = "Stored. Leave blank to keep it."

    def clean_site(self) -> str:
        site = self.cleaned_data["site"].strip()
        site = site.removeprefix("https://").removeprefix("http://").rstrip("/")
        if not site or "/" in site or " " in site:
            raise forms.ValidationError("Enter the host name only, e.g. psa.example.com.")
        return site.lower()

    def clean_api_key(self) -> str:
        key = self.cleaned_data.get("api_key", "")
        if not key and "api_key" not in self.existing_secrets:
            raise forms.ValidationError("Enter the API key.")
        return key

    def config_and_secrets(self) -> tuple[dict, dict]:
        return {"site": self.cleaned_data["site"]}, {"api_key": self.cleaned_data["api_key"]}
