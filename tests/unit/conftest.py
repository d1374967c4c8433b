"""Unit-tier fixtures: the in-memory PSA in place of the vendors, and eager Celery tasks."""

from __future__ import annotations

import uuid

import pytest

from tests.fakes import memory


@pytest.fixture
def memory_psa(monkeypatch):
    """Every vendor slug served by tests.fakes.memory (names kept); returns its reset state."""
    from integrations import registry

    for slug, vendor in list(registry.VENDORS.items()):
        stand_in = memory.MemoryProvider.standing_in_for(vendor.provider)
        monkeypatch.setitem(registry.VENDORS, slug, registry.Vendor(stand_in))
    memory.state.reset()
    yield memory.state
    memory.state.reset()


@pytest.fixture
def eager_tasks():
    """Celery tasks run in the test's thread when queued (retries too, without waiting).
    Tasks are queued on commit: wrap the code in django_capture_on_commit_callbacks(execute=True)."""
    from hub.celery import app

    # Not task_eager_propagates: it would raise a task's Retry instead of running the retry.
    saved = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = saved


@pytest.fixture
def queued(monkeypatch):
    """The integration tasks recorded instead of sent: [(task name, args), ...]."""
    from integrations import tasks

    calls: list[tuple[str, tuple]] = []
    for name in ("verify_connection", "check_permissions", "refresh_picklist", "import_companies"):
        monkeypatch.setattr(getattr(tasks, name), "delay", lambda *args, _name=name: calls.append((_name, args)))
    return calls


@pytest.fixture
def private_cache(settings):
    """A fresh in-memory cache (limiter counters, tokens) for this test alone."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"test-{uuid.uuid4().hex}"}
    }
