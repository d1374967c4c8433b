"""DESIGN.md's import rules, read from the source files themselves."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from integrations import registry

ROOT = Path(__file__).resolve().parent.parent
# Every registered PSA's package, and the base they share.
VENDOR_PACKAGES = ["base", *registry.slugs()]
# What a vendor package may import besides the standard library and its own modules.
VENDOR_ALLOWED_THIRD_PARTY = {"requests", "urllib3"}
APP_PACKAGES = ["hub", "integrations", "ticketing", "billing"]


def _python_files(*folders: str) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        files.extend(sorted((ROOT / folder).rglob("*.py")))
    return [f for f in files if "migrations" not in f.parts]


def _imports(path: Path) -> list[str]:
    """Absolute module names imported by a file (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.append(module)
            # `from package import module` imports the module too.
            names.extend(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_every_vendor_package_is_registered():
    """A folder with a provider.py is a PSA: registered, so the rules below and the contract suites
    see it (a package that escaped the registry would escape them too)."""
    packages = {path.parent.name for path in (ROOT / "integrations").glob("*/provider.py")} - {"base"}
    assert packages == set(registry.slugs()), "register each PSA package in integrations/registry.py"
    for provider in registry.PROVIDERS:
        assert provider.__module__ == f"integrations.{provider.slug}.provider", (
            f"{provider.__name__} lives in {provider.__module__}; a PSA's slug names its package")


def _vendor_files() -> list[Path]:
    return [f for name in VENDOR_PACKAGES for f in _python_files(f"integrations/{name}")]


@pytest.mark.parametrize("path", _vendor_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_vendor_packages_are_plain_python(path: Path):
    """Rule 1: no ORM, settings, Celery or app code in integrations/base and the vendors."""
    own_package = ".".join(path.relative_to(ROOT).parts[:2])
    bad = []
    for name in _imports(path):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in VENDOR_ALLOWED_THIRD_PARTY:
            continue
        if name.startswith(("integrations.base", own_package)):
            continue
        if path.name == "forms.py" and (name == "django" or name.startswith("django.forms")):
            continue
        bad.append(name)
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(set(bad))}; vendor packages stay plain Python"


def _view_files() -> list[Path]:
    """Pages, API and inbound-webhook views of every app (vendor packages are covered above)."""
    vendor = set(_vendor_files())
    return [
        f
        for f in _python_files(*APP_PACKAGES)
        if f not in vendor and (f.name in ("views.py", "api.py", "webhooks.py") or f.name.endswith("_api.py"))
    ]


@pytest.mark.parametrize("path", _view_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_views_never_call_a_psa(path: Path):
    """Rule 3: pages and API views hand PSA work to tasks; they do not import requests."""
    bad = [name for name in _imports(path) if name.split(".")[0] in {"requests", "urllib3", "httpx"}]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", _python_files(*APP_PACKAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_settings_are_read_once(path: Path):
    """Rule 10: only hub/settings.py reads the environment."""
    allowed = {"hub/settings.py", "hub/celery.py", "hub/wsgi.py"}  # the last two only name the settings module
    if str(path.relative_to(ROOT)) in allowed:
        return
    assert "os.environ" not in path.read_text() and "getenv(" not in path.read_text(), (
        f"{path.relative_to(ROOT)} reads the environment; read django.conf.settings instead"
    )


def test_the_rules_see_a_violation(tmp_path):
    """The checker itself: a vendor module importing the ORM is caught."""
    module = ROOT / "integrations" / "base" / "_architecture_probe.py"
    module.write_text("from django.db import models\nfrom . import errors\n")
    try:
        imported = _imports(module)
    finally:
        module.unlink()
    assert "django.db" in imported and "integrations.base.errors" in imported
