"""The credential vault: encryption at rest, ownership binding, key errors, rotation, checks."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core import checks
from django.core.management import CommandError, call_command
from django.db import connection as db_connection
from django.test import override_settings

from hub import vault
from integrations.models import Connection
from tests.factories import make_account

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pa55w0rd-do-not-leak"
VALUES = {"username": "api-user@msp.example", "password": SECRET}

KEY1 = Fernet.generate_key().decode()
KEY2 = Fernet.generate_key().decode()
KEY3 = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def _fresh_ring():
    """The parsed key ring is cached per setting value; start and end every test without it."""
    vault._ring_for.cache_clear()
    yield
    vault._ring_for.cache_clear()


def keys(*pairs: tuple[str, str]) -> str:
    return ",".join(f"{key_id}:{key}" for key_id, key in pairs)


def store_connection(account=None, values=VALUES, vendor="autotask") -> Connection:
    """A Connection row whose credentials are encrypted with the current newest key."""
    account = account or make_account()
    row = Connection(id=uuid.uuid4(), account=account, vendor=vendor)
    row.credentials = vault.encrypt_bundle(values, account_id=account.pk, connection_id=row.pk)
    row.credentials_key_id = vault.key_id_of(row.credentials)
    row.save()
    return row


# Round trip and what is stored ------------------------------------------------------------------


def test_round_trip():
    ring = vault.parse_keys(keys(("k1", KEY1)))
    stored = vault.encrypt_bundle(VALUES, account_id=7, connection_id="c-1", ring=ring)
    assert vault.decrypt_bundle(stored, account_id=7, connection_id="c-1", ring=ring) == VALUES


def test_stored_text_names_the_key_and_hides_the_secret():
    ring = vault.parse_keys(keys(("k2", KEY2), ("k1", KEY1)))
    stored = vault.encrypt_bundle(VALUES, account_id=7, connection_id="c-1", ring=ring)
    assert stored.startswith("fernet:k2:")
    assert vault.key_id_of(stored) == "k2"
    assert SECRET not in stored
    assert "api-user" not in stored


def test_two_encryptions_of_the_same_bundle_differ():
    ring = vault.parse_keys(keys(("k1", KEY1)))
    first = vault.encrypt_bundle(VALUES, account_id=1, connection_id="c", ring=ring)
    second = vault.encrypt_bundle(VALUES, account_id=1, connection_id="c", ring=ring)
    assert first != second


def test_uses_the_setting_by_default():
    with override_settings(HUB_ENCRYPTION_KEYS=keys(("k9", KEY1))):
        stored = vault.encrypt_bundle(VALUES, account_id=1, connection_id="c")
        assert vault.key_id_of(stored) == "k9"
        assert vault.decrypt_bundle(stored, account_id=1, connection_id="c") == VALUES


def test_old_key_still_decrypts_after_a_new_one_is_added():
    old = vault.parse_keys(keys(("k1", KEY1)))
    stored = vault.encrypt_bundle(VALUES, account_id=1, connection_id="c", ring=old)
    new = vault.parse_keys(keys(("k2", KEY2), ("k1", KEY1)))
    assert vault.decrypt_bundle(stored, account_id=1, connection_id="c", ring=new) == VALUES
    rotated = vault.reencrypt(stored, account_id=1, connection_id="c", ring=new)
    assert vault.key_id_of(rotated) == "k2"
    assert vault.decrypt_bundle(rotated, account_id=1, connection_id="c", ring=new) == VALUES


# Ownership binding --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "account_id, connection_id",
    [(2, "c-1"), (1, "c-2"), (2, "c-2")],
    ids=["other account", "other connection", "both"],
)
def test_a_token_copied_onto_another_row_is_refused(account_id, connection_id):
    ring = vault.parse_keys(keys(("k1", KEY1)))
    stored = vault.encrypt_bundle(VALUES, account_id=1, connection_id="c-1", ring=ring)
    with pytest.raises(vault.VaultError, match="another connection") as caught:
        vault.decrypt_bundle(stored, account_id=account_id, connection_id=connection_id, ring=ring)
    assert SECRET not in str(caught.value)


@pytest.mark.django_db
def test_a_token_copied_between_connection_rows_is_refused():
    with override_settings(HUB_ENCRYPTION_KEYS=keys(("k1", KEY1))):
        victim = store_connection()
        attacker = store_connection(values={"username": "mine", "password": "mine"})
        Connection.objects.filter(pk=attacker.pk).update(credentials=victim.credentials)
        attacker.refresh_from_db()
        with pytest.raises(vault.VaultError) as caught:
            vault.decrypt_bundle(attacker.credentials, account_id=attacker.account_id, connection_id=attacker.pk)
        assert SECRET not in str(caught.value)
        # The owner's row still decrypts.
        assert vault.decrypt_bundle(victim.credentials, account_id=victim.account_id, connection_id=victim.pk) == VALUES


# Failures are VaultErrors that name the setting and leak nothing ----------------------------------


def _assert_clean(error: vault.VaultError, *secrets: str) -> None:
    message = str(error)
    for secret in (SECRET, *secrets):
        assert secret not in message
    assert error.__cause__ is None  # no chained InvalidToken with a traceback full of bytes


def test_bad_token_raises():
    ring = vault.parse_keys(keys(("k1", KEY1)))
    with pytest.raises(vault.VaultError, match=vault.SETTING) as caught:
        vault.decrypt_bundle("fernet:k1:not-a-token", account_id=1, connection_id="c", ring=ring)
    _assert_clean(caught.value, KEY1)


def test_tampered_token_raises():
    ring = vault.parse_keys(keys(("k1", KEY1)))
    stored = vault.encrypt_bundle(VALUES, account_id=1, connection_id="c", ring=ring)
    tampered = stored[:-6] + ("AAAAAA" if not stored.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(vault.VaultError, match=vault.SETTING) as caught:
        vault.decrypt_bundle(tampered, account_id=1, connection_id="c", ring=ring)
    _assert_clean(caught.value, KEY1)


@pytest.mark.parametrize("stored", ["", "plain text password", SECRET, "fernet:", "fernet:k1", "aes:k1:abc"])
def test_text_not_in_the_vault_format_is_refused_not_returned(stored):
    ring = vault.parse_keys(keys(("k1", KEY1)))
    with pytest.raises(vault.VaultError) as caught:
        vault.decrypt_bundle(stored, account_id=1, connection_id="c", ring=ring)
    _assert_clean(caught.value)


def test_unknown_key_id_raises_naming_the_setting():
    old = vault.parse_keys(keys(("k1", KEY1)))
    stored = vault.encrypt_bundle(VALUES, account_id=1, connection_id="c", ring=old)
    new = vault.parse_keys(keys(("k2", KEY2)))
    with pytest.raises(vault.VaultError, match=vault.SETTING) as caught:
        vault.decrypt_bundle(stored, account_id=1, connection_id="c", ring=new)
    assert "'k1'" in str(caught.value)
    _assert_clean(caught.value, KEY1, KEY2)


def test_wrong_key_under_the_same_id_raises_naming_the_setting():
    right = vault.parse_keys(keys(("k1", KEY1)))
    stored = vault.encrypt_bundle(VALUES, account_id=1, connection_id="c", ring=right)
    wrong = vault.parse_keys(keys(("k1", KEY2)))
    with pytest.raises(vault.VaultError, match=vault.SETTING) as caught:
        vault.decrypt_bundle(stored, account_id=1, connection_id="c", ring=wrong)
    _assert_clean(caught.value, KEY1, KEY2)


# parse_keys ---------------------------------------------------------------------------------------

BAD_KEY = "this-is-not-a-fernet-key-but-a-secret"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        ",,",
        KEY1,  # no id
        f":{KEY1}",  # empty id
        "k1:",  # empty key
        f"k1:{KEY1},k1:{KEY2}",  # duplicate id
        f"k1:{BAD_KEY}",  # not a Fernet key
        f"k2:{KEY2},k1:{BAD_KEY}",  # a bad key after a good one
        f"k-1:{KEY1}",  # id with punctuation
        f"{'k' * 33}:{KEY1}",  # id longer than Connection.credentials_key_id holds
        f"{KEY1}:k1",  # the wrong way round: the error must not print the key
    ],
    ids=["empty", "blank", "only commas", "no id", "empty id", "empty key", "duplicate id", "invalid key",
         "second invalid", "bad id", "long id", "key:id"],
)
def test_parse_keys_errors_name_the_setting_and_not_the_key(raw):
    with pytest.raises(vault.VaultError, match=vault.SETTING) as caught:
        vault.parse_keys(raw)
    message = str(caught.value)
    assert BAD_KEY not in message
    assert KEY1 not in message
    assert KEY2 not in message


def test_parse_keys_reads_ids_newest_first_and_tolerates_spaces():
    ring = vault.parse_keys(f" k2 : {KEY2} , k1:{KEY1} ,")
    assert ring.ids == ("k2", "k1")
    assert ring.newest_id == "k2"
    assert ring.by_id("k1") is ring.fernets[1]
    assert ring.by_id("k3") is None


# System check -------------------------------------------------------------------------------------


def _hub_errors():
    return [message for message in checks.run_checks() if message.id == "hub.E001"]


@pytest.mark.parametrize("raw", ["", "k1", f"k1:{BAD_KEY}", f"k1:{KEY1},k1:{KEY2}"])
def test_system_check_refuses_bad_keys(raw):
    with override_settings(HUB_ENCRYPTION_KEYS=raw):
        errors = _hub_errors()
    assert len(errors) == 1
    assert vault.SETTING in errors[0].msg
    assert BAD_KEY not in errors[0].msg
    assert errors[0].level == checks.ERROR


def test_system_check_accepts_good_keys():
    with override_settings(HUB_ENCRYPTION_KEYS=keys(("k2", KEY2), ("k1", KEY1))):
        assert _hub_errors() == []


def _manage(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DJANGO_", "SECRET_KEY", "DEBUG"))}
    clean.update({"DEBUG": "false", "SECRET_KEY": "x" * 50, "HUB_DATA_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def test_start_without_keys_is_a_clear_error(tmp_path):
    result = _manage("check", tmp_path=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "HUB_ENCRYPTION_KEYS" in output
    assert "Traceback" not in output
    # Outside development nothing is generated.
    assert not (tmp_path / "hub_encryption_keys").exists()


def test_start_with_a_malformed_key_is_a_clear_error(tmp_path):
    result = _manage("check", tmp_path=tmp_path, HUB_ENCRYPTION_KEYS=f"k1:{BAD_KEY}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "HUB_ENCRYPTION_KEYS" in output
    assert "hub.E001" in output
    assert "Traceback" not in output
    assert BAD_KEY not in output


def test_start_with_good_keys_passes_the_check(tmp_path):
    result = _manage("check", tmp_path=tmp_path, HUB_ENCRYPTION_KEYS=keys(("k1", KEY1)))
    assert result.returncode == 0, result.stdout + result.stderr


# The database holds no plaintext ------------------------------------------------------------------


@pytest.mark.django_db
def test_database_dump_contains_no_plaintext():
    with override_settings(HUB_ENCRYPTION_KEYS=keys(("k1", KEY1))):
        rows = [store_connection() for _ in range(2)]
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM integrations_connection")
        credentials = [value for (value,) in cursor.fetchall()]
        cursor.execute("SELECT * FROM integrations_connection")
        everything = repr(cursor.fetchall())
    assert len(credentials) == len(rows)
    for value in credentials:
        assert value.startswith("fernet:k1:")
        assert SECRET not in value
        assert "api-user" not in value
    assert SECRET not in everything
    assert KEY1 not in everything


# rotate_keys --------------------------------------------------------------------------------------


def _rotate() -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("rotate_keys", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_rotate_keys_moves_every_row_to_the_newest_key():
    with override_settings(HUB_ENCRYPTION_KEYS=keys(("k1", KEY1))):
        on_k1 = [store_connection(values={"password": f"{SECRET}-{n}"}) for n in range(3)]
    with override_settings(HUB_ENCRYPTION_KEYS=keys(("k2", KEY2), ("k1", KEY1))):
        on_k2 = store_connection(values={"password": f"{SECRET}-new"})
        before = on_k2.credentials
        output, errors = _rotate()
        assert "Re-encrypted 3 credential bundle(s) with key 'k2'" in output
        assert "key 'k2': 4 row(s)" in output
        assert "'k1'" not in output.split("\n", 1)[1]
        assert errors == ""
        for n, row in enumerate(on_k1):
            row.refresh_from_db()
            assert row.credentials_key_id == "k2"
            assert vault.key_id_of(row.credentials) == "k2"
            assert vault.decrypt_bundle(row.credentials, account_id=row.account_id, connection_id=row.pk) == {
                "password": f"{SECRET}-{n}"
            }
        on_k2.refresh_from_db()
        assert on_k2.credentials == before  # already on the newest key: untouched

        # Twice is safe: nothing changes.
        snapshot = dict(Connection.objects.values_list("pk", "credentials"))
        output, _ = _rotate()
        assert "Re-encrypted 0 credential bundle(s)" in output
        assert "key 'k2': 4 row(s)" in output
        assert dict(Connection.objects.values_list("pk", "credentials")) == snapshot

    # The old key can now be dropped.
    with override_settings(HUB_ENCRYPTION_KEYS=keys(("k2", KEY2))):
        for row in Connection.objects.all():
            vault.decrypt_bundle(row.credentials, account_id=row.account_id, connection_id=row.pk)


@pytest.mark.django_db
def test_rotate_keys_prints_counts_per_key_and_reports_rows_it_cannot_read():
    with override_settings(HUB_ENCRYPTION_KEYS=keys(("k1", KEY1))):
        readable = store_connection()
    with override_settings(HUB_ENCRYPTION_KEYS=keys(("k3", KEY3))):
        lost = store_connection()  # on a key that will be missing
    with override_settings(HUB_ENCRYPTION_KEYS=keys(("k2", KEY2), ("k1", KEY1))):
        out, err = StringIO(), StringIO()
        with pytest.raises(CommandError, match="1 row"):
            call_command("rotate_keys", stdout=out, stderr=err)
    output = out.getvalue()
    assert "Re-encrypted 1 credential bundle(s) with key 'k2'" in output
    assert "key 'k2': 1 row(s)" in output
    assert "key 'k3': 1 row(s)" in output
    assert str(lost.pk) in err.getvalue()
    assert "HUB_ENCRYPTION_KEYS" in err.getvalue()
    assert SECRET not in output + err.getvalue()
    readable.refresh_from_db()
    lost.refresh_from_db()
    assert readable.credentials_key_id == "k2"
    assert lost.credentials_key_id == "k3"


@pytest.mark.django_db
def test_rotate_keys_with_no_rows():
    with override_settings(HUB_ENCRYPTION_KEYS=keys(("k1", KEY1))):
        output, _ = _rotate()
    assert "Re-encrypted 0" in output
    assert "no stored credentials" in output


@pytest.mark.django_db
def test_rotate_keys_with_bad_setting_is_a_command_error():
    with override_settings(HUB_ENCRYPTION_KEYS=f"k1:{BAD_KEY}"):
        with pytest.raises(CommandError, match=vault.SETTING) as caught:
            _rotate()
    assert BAD_KEY not in str(caught.value)
