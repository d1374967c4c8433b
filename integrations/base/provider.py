"""What every PSA adapter offers the hub: link checks, permissions and the picklists.

A provider is built per use from plain values: the connection's shown `config`, its decrypted
`secrets` (for one call only, never stored on anything that outlives it) and a Transport.
It returns small dataclasses and raises the errors of integrations.base.errors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from integrations.base.billing import BillingAdapter
from integrations.base.client import Transport
from integrations.base.ticketing import TicketingAdapter


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
    slug: ClassVar[str]
    name: ClassVar[str]
    # Credential fields that are secret (write-only in forms and the API) and shown ones.
    secret_fields: ClassVar[tuple[str, ...]]
    config_fields: ClassVar[tuple[str, ...]]
    # Picklist kinds this PSA has, each with the parameter it needs (None, "board", "company"...).
    picklist_kinds: ClassVar[dict[str, str | None]]

    def __init__(self, config: dict, secrets: dict, transport: Transport | None = None):
        self.config = dict(config)
        self.secrets = dict(secrets)
        self.transport = transport or Transport()

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
