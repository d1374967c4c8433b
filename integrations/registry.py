"""Vendor slug → its provider and link form. An explicit dict: nothing registers itself."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.module_loading import import_string


@dataclass(frozen=True)
class Vendor:
    slug: str
    name: str
    provider_path: str
    form_path: str

    @property
    def link_label(self) -> str:
        return f"Link {self.name}"

    @property
    def provider(self):
        return import_string(self.provider_path)

    @property
    def form(self):
        return import_string(self.form_path)


VENDORS: dict[str, Vendor] = {
    "connectwise": Vendor(
        "connectwise", "ConnectWise",
        "integrations.connectwise.provider.ConnectWiseProvider", "integrations.connectwise.forms.ConnectWiseLinkForm",
    ),
    "autotask": Vendor(
        "autotask", "Autotask",
        "integrations.autotask.provider.AutotaskProvider", "integrations.autotask.forms.AutotaskLinkForm",
    ),
    "halo": Vendor("halo", "Halo PSA", "integrations.halo.provider.HaloProvider", "integrations.halo.forms.HaloLinkForm"),
}


def get(slug: str) -> Vendor:
    return VENDORS[slug]
