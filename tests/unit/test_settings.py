"""The strict environment helpers of hub/settings.py, and the generated development secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from hub import settings as hub_settings

ROOT = Path(__file__).resolve().parents[2]
NAME = "HUB_TEST_SETTING"


@pytest.fixture(autouse=True)
def _unset(monkeypatch):
    monkeypatch.delenv(NAME, raising=False)
    monkeypatch.delenv(f"{NAME}_FILE", raising=False)


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", " yes ", "on"])
def test_env_bool_true(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)
    assert hub_settings.env_bool(NAME, False) is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off", ""])
def test_env_bool_false(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)
    assert hub_settings.env_bool(NAME, True) is False


def test_env_bool_default():
    assert hub_settings.env_bool(NAME, True) is True
    assert hub_settings.env_bool(NAME, False) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "yes please"])
def test_env_bool_rejects_junk_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)
    with pytest.raises(ImproperlyConfigured, match=NAME):
        hub_settings.env_bool(NAME, False)


def test_env_int_and_float_reject_junk_naming_the_variable(monkeypatch):
    monkeypatch.setenv(NAME, "ten")
    with pytest.raises(ImproperlyConfigured, match=NAME):
        hub_settings.env_int(NAME, 1)
    with pytest.raises(ImproperlyConfigured, match=NAME):
        hub_settings.env_float(NAME, 1.0)
    monkeypatch.setenv(NAME, " 12 ")
    assert hub_settings.env_int(NAME, 1) == 12
    assert hub_settings.env_float(NAME, 1.0) == 12.0


def test_env_list(monkeypatch):
    assert hub_settings.env_list(NAME, ["x"]) == ["x"]
    monkeypatch.setenv(NAME, " a, b ,,c ")
    assert hub_settings.env_list(NAME, []) == ["a", "b", "c"]


def test_env_str_reads_the_variable_stripped(monkeypatch):
    assert hub_settings.env_str(NAME, "fallback") == "fallback"
    monkeypatch.setenv(NAME, "  value \n")
    assert hub_settings.env_str(NAME) == "value"


def test_env_str_reads_name_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-the-file\n")
    monkeypatch.setenv(NAME, "from-the-environment")
    monkeypatch.setenv(f"{NAME}_FILE", str(secret))
    assert hub_settings.env_str(NAME) == "from-the-file"


def test_env_str_unreadable_file_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(f"{NAME}_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match=f"{NAME}_FILE"):
        hub_settings.env_str(NAME)


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DJANGO_", "SECRET_KEY", "DEBUG"))}
    clean.update(env)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return _run("-c", code, **env)


def test_development_generates_missing_secrets_once_and_never_prints_them(tmp_path):
    code = "import hub.settings as s; print(len(s.SECRET_KEY), s.HUB_ENCRYPTION_KEYS.split(':')[0])"
    first = _python(code, DEBUG="true", HUB_DATA_DIR=str(tmp_path))
    assert first.returncode == 0, first.stderr
    keys_file = tmp_path / "hub_encryption_keys"
    secret_file = tmp_path / "secret_key"
    stored_keys = keys_file.read_text().strip()
    assert stored_keys.startswith("k1:")
    assert f"generated HUB_ENCRYPTION_KEYS and kept it in {keys_file}" in first.stderr
    assert stored_keys.split(":", 1)[1] not in first.stdout + first.stderr
    assert secret_file.read_text().strip() not in first.stdout + first.stderr
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600"

    second = _python(code, DEBUG="true", HUB_DATA_DIR=str(tmp_path))
    assert second.returncode == 0, second.stderr
    assert "generated" not in second.stderr
    assert keys_file.read_text().strip() == stored_keys


def test_junk_debug_value_is_a_clear_error(tmp_path):
    result = _run("manage.py", "check", DEBUG="perhaps", HUB_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DEBUG must be true or false" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_routed_and_scheduled_task_exists():
    """A typo in a task name would silently send work nowhere."""
    from django.conf import settings

    from hub.celery import app
    from hub.schedule import BEAT_SCHEDULE

    app.loader.import_default_modules()
    names = set(settings.CELERY_TASK_ROUTES) | {entry["task"] for entry in BEAT_SCHEDULE.values()}
    assert names - set(app.tasks) == set()
    assert app.amqp.router.route({}, "ticketing.deliver_incident")["queue"].name == "psa"
    assert app.amqp.router.route({}, "ticketing.sweep")["queue"].name == "default"
