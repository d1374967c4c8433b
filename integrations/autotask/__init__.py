"""Autotask PSA: zone discovery, the REST client, and the provider, ticketing and billing adapters."""
