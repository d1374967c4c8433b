"""Every registered PSA has its test doubles: an HTTP fake in FakePsas (the integration and browser
tiers parametrise over the registry) and its ticketing words for the fakes' setup."""

from __future__ import annotations

import dataclasses

from integrations import registry
from tests.fakes import servers, tickets


def test_every_registered_psa_has_an_http_fake_and_its_words():
    fakes = {field.name for field in dataclasses.fields(servers.FakePsas)}
    for slug in registry.slugs():
        assert slug in fakes, f"add tests/fakes/{slug}_server.py and a FakePsas.{slug} field"
        assert slug in tickets.VENDORS, f"add {slug}'s ticketing words to tests/fakes/tickets.py"
    assert tuple(servers.VENDORS) == registry.slugs()
