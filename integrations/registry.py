"""Vendor slug → its provider: the one list of the PSAs the hub speaks. Adding a PSA is its folder
under integrations/ plus one line here (docs/adding-a-psa.md). An explicit tuple: nothing
registers itself by being imported.

Everything else about a PSA is declared on its provider class (integrations/base/provider.py);
app code reads it from here and never names a vendor.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.module_loading import import_string

from integrations.autotask.provider import AutotaskProvider
from integrations.base.provider import Provider
from integrations.connectwise.provider import ConnectWiseProvider
from integrations.halo.provider import HaloProvider

PROVIDERS: tuple[type[Provider], ...] = (
    ConnectWiseProvider,
    AutotaskProvider,
    HaloProvider,
)


@dataclass(frozen=True)
class Vendor:
    provider: type[Provider]

    @property
    def slug(self) -> str:
        return self.provider.slug

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def link_label(self) -> str:
        return f"Link {self.name}"

    @property
    def form(self):
        return import_string(self.provider.link_form)


VENDORS: dict[str, Vendor] = {provider.slug: Vendor(provider) for provider in PROVIDERS}


def get(slug: str) -> Vendor:
    return VENDORS[slug]


def provider(slug: str) -> type[Provider]:
    """The provider class of a vendor slug (its declarations: budget, fields, words...)."""
    return VENDORS[slug].provider


def slugs() -> tuple[str, ...]:
    return tuple(VENDORS)


def choices() -> list[tuple[str, str]]:
    """Connection.vendor's choices: (slug, the product's full name)."""
    return [(provider.slug, provider.display_name) for provider in PROVIDERS]
