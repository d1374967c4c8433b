"""What every PSA adapter offers the hub, and everything the hub needs to know about that PSA.

A PSA declares itself on its provider class (like an allauth provider): its names, the link
form, which credential fields are secret, its request budget, the Ticketing and billing pages'
fields in its own words, its status-sync capability. App code asks integrations.registry for a
vendor's provider and reads these; it never names a vendor.

A provider is built per use from plain values: the connection's shown `config`, its decrypted
`secrets` (for one call only, never stored on anything that outlives it) and a Transport.
It returns small dataclasses and raises the errors of integrations.base.errors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from integrations.base.billing import BillingAdapter, BillingFields
from integrations.base.budget import RequestBudget
from integrations.base.client import Transport
from integrations.base.status_sync import StatusSync
from integrations.base.ticketing import TicketingAdapter, TicketingFields


@dataclass(frozen=True)
class VerifyResult:
    """A verified link: a name to show and config the PSA told us (codebase, zone URL...)."""

    display_name: str
    config_updates: dict = field(default_factory=dict)
    # When the PSA says when the credential stops working (Halo client secrets).
    credential_expires_at: datetime | None = None


@dataclass(frozen=True)
class PermissionCheck:
    key: str  # stable id, e.g. "service.priority"
    label: str  # in the PSA's words, e.g. "Service > Priority"
    feature: str  # "tickets" | "billing" | "sync"
    ok: bool
    message: str = ""  # what is wrong, when not ok
    fix: str = ""  # where in the PSA to grant it


@dataclass(frozen=True)
class PermissionReport:
    checks: tuple[PermissionCheck, ...]

    @property
    def missing(self) -> tuple[PermissionCheck, ...]:
        return tuple(check for check in self.checks if not check.ok)

    @property
    def ok(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class Company:
    id: str
    name: str
    identifier: str = ""  # ConnectWise identifier / Autotask number / Halo reference
    active: bool = True


@dataclass(frozen=True)
class Contact:
    id: str
    name: str
    email: str = ""
    company_id: str = ""


@dataclass(frozen=True)
class PicklistItem:
    """One choice for a settings page: a board, status, priority, agreement, licence..."""

    id: str
    name: str
    parent_id: str = ""  # the board of a status, the type of a subtype, the company of an agreement
    active: bool = True
    extra: dict = field(default_factory=dict)  # e.g. {"closed": True}, {"default_team": False}


class Provider(ABC):
    slug: ClassVar[str]  # the vendor slug: package, registry key, URL segment, Connection.vendor
    name: ClassVar[str]  # in messages: "ConnectWise said: ..."
    display_name: ClassVar[str]  # the product's full name, on the pages' choices
    link_form: ClassVar[str]  # dotted path of the link form (forms.py, the one Django module here)
    # Credential fields that are secret (write-only in forms and the API) and shown ones.
    secret_fields: ClassVar[tuple[str, ...]]
    config_fields: ClassVar[tuple[str, ...]]
    # Config fields holding a host the user typed: checked against the private-network guard
    # when saved. `host_fields` adds discovered ones: where the PSA is (for "can it call us?").
    typed_host_fields: ClassVar[tuple[str, ...]] = ()
    host_fields: ClassVar[tuple[str, ...]] = ()
    # Config the hub itself supplies from its settings: {config key: settings name}.
    hub_settings: ClassVar[dict[str, str]] = {}
    # Picklist kinds this PSA has, each with the parameter it needs (None, "board", "company"...).
    picklist_kinds: ClassVar[dict[str, str | None]]
    budget: ClassVar[RequestBudget]
    ticketing_fields: ClassVar[TicketingFields]
    billing_fields: ClassVar[BillingFields]
    status_sync: ClassVar[StatusSync]
    # Permission key -> (the permission in the PSA's words, where to grant it).
    permissions: ClassVar[dict[str, tuple[str, str]]] = {}
    # Request headers that carry credentials, beyond the usual ones (never recorded).
    secret_headers: ClassVar[tuple[str, ...]] = ()
    # What to re-enter when the PSA refuses the credentials, for the health panel.
    credentials_hint: ClassVar[str] = "the credentials"
    # What the PSA calls the credential that may expire.
    expiring_secret: ClassVar[str] = "credential"

    def __init__(self, config: dict, secrets: dict, transport: Transport | None = None, *, token_store: Any = None):
        self.config = dict(config)
        self.secrets = dict(secrets)
        self.transport = transport or Transport()
        # Where short-lived access tokens are kept between uses (get/set with a ttl, like Django's
        # cache, which the hub lends); a PSA that needs none ignores it.
        self.token_store = token_store

    @abstractmethod
    def verify(self) -> VerifyResult:
        """Prove the credentials work (cheapest authenticated call); discover what must be."""

    @abstractmethod
    def check_permissions(self) -> PermissionReport:
        """Probe every capability the hub needs and say, in the PSA's words, what is missing."""

    @abstractmethod
    def companies(self, search: str = "") -> Iterator[Company]:
        """Active customer companies, paged through to the end."""

    @abstractmethod
    def contacts(self, company_id: str) -> list[Contact]: ...

    @abstractmethod
    def picklist(self, kind: str, parent_id: str = "") -> list[PicklistItem]:
        """Choices of `kind` (see picklist_kinds), e.g. statuses of a board."""

    @abstractmethod
    def ticketing(self) -> TicketingAdapter: ...

    @abstractmethod
    def billing(self) -> BillingAdapter: ...

    def ticket_url(self, ticket_id: str) -> str:
        """Link to the ticket in the PSA's web UI, for people."""
        return ""
