"""Encryption of credential bundles at rest, on Fernet/MultiFernet.

Keys come from HUB_ENCRYPTION_KEYS as "id:key" pairs, newest first. A bundle is stored as one
token, "fernet:<key id>:<Fernet token>", so rows still on an old key can be found and rotated.
The plaintext carries the owning account and connection ids and decryption checks them:
a ciphertext copied onto another account's row is refused. Every failure raises VaultError
(fail closed), and no message ever contains a decrypted value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

SETTING = "HUB_ENCRYPTION_KEYS"
SCHEME = "fernet"
KEY_ID_MAX = 32  # integrations.Connection.credentials_key_id holds the id of a row's key


class VaultError(Exception):
    """Credentials cannot be encrypted or decrypted. The message is safe to show."""


@dataclass(frozen=True)
class KeyRing:
    ids: tuple[str, ...]
    fernets: tuple[Fernet, ...]

    @property
    def newest_id(self) -> str:
        return self.ids[0]

    def by_id(self, key_id: str) -> Fernet | None:
        for known, fernet in zip(self.ids, self.fernets):
            if known == key_id:
                return fernet
        return None

    @property
    def multi(self) -> MultiFernet:
        return MultiFernet(list(self.fernets))


def parse_keys(raw: str) -> KeyRing:
    """Parse "id:key,id:key". Errors name the setting and the entry, never the key itself."""
    ids: list[str] = []
    fernets: list[Fernet] = []
    entries = [entry.strip() for entry in (raw or "").split(",") if entry.strip()]
    if not entries:
        raise VaultError(f"{SETTING} is empty: set it to one or more id:key pairs, newest first.")
    for position, entry in enumerate(entries, start=1):
        key_id, sep, key = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not key_id or not key.strip():
            raise VaultError(f"{SETTING} entry {position} is not of the form id:key.")
        if not (key_id.isascii() and key_id.isalnum()) or len(key_id) > KEY_ID_MAX:
            raise VaultError(
                # Not echoed: a key written the wrong way round ("key:id") would be printed.
                f"{SETTING} entry {position}: the key id must be up to {KEY_ID_MAX} letters and digits."
            )
        if key_id in ids:
            raise VaultError(f"{SETTING} names the key id {key_id!r} twice.")
        try:
            fernets.append(Fernet(key.strip().encode()))
        except (ValueError, TypeError):
            raise VaultError(
                f"{SETTING} entry {position} (id {key_id!r}) is not a valid Fernet key: it must be 32 url-safe "
                "base64-encoded bytes, as made by `python -c \"from cryptography.fernet import Fernet; "
                'print(Fernet.generate_key().decode())"`.'
            ) from None
        ids.append(key_id)
    return KeyRing(tuple(ids), tuple(fernets))


@lru_cache(maxsize=4)
def _ring_for(raw: str) -> KeyRing:
    return parse_keys(raw)


def key_ring() -> KeyRing:
    from django.conf import settings

    return _ring_for(getattr(settings, SETTING, ""))


def key_id_of(stored: str) -> str:
    scheme, sep, rest = (stored or "").partition(":")
    key_id, sep2, _ = rest.partition(":")
    if scheme != SCHEME or not sep or not sep2 or not key_id:
        raise VaultError("The stored credentials are not in the vault's format; re-enter them.")
    return key_id


def encrypt_bundle(values: dict, *, account_id, connection_id, ring: KeyRing | None = None) -> str:
    ring = ring or key_ring()
    plaintext = json.dumps({"account": str(account_id), "connection": str(connection_id), "values": values})
    token = ring.fernets[0].encrypt(plaintext.encode()).decode()
    return f"{SCHEME}:{ring.newest_id}:{token}"


def decrypt_bundle(stored: str, *, account_id, connection_id, ring: KeyRing | None = None) -> dict:
    ring = ring or key_ring()
    key_id = key_id_of(stored)
    token = stored.split(":", 2)[2].encode()
    fernet = ring.by_id(key_id)
    if fernet is None:
        raise VaultError(
            f"These credentials were encrypted with key {key_id!r}, which is not in {SETTING}. "
            "Add that key back (after the newest) or re-enter the credentials."
        )
    try:
        payload = json.loads(fernet.decrypt(token))
    except (InvalidToken, ValueError):
        raise VaultError(
            f"The stored credentials cannot be decrypted with key {key_id!r} from {SETTING}; "
            "the key or the stored value has changed. Re-enter the credentials."
        ) from None
    if payload.get("account") != str(account_id) or payload.get("connection") != str(connection_id):
        raise VaultError("The stored credentials belong to another connection and were refused. Re-enter them.")
    return payload["values"]


def reencrypt(stored: str, *, account_id, connection_id, ring: KeyRing | None = None) -> str:
    """The same bundle under the newest key (checks ownership on the way)."""
    ring = ring or key_ring()
    values = decrypt_bundle(stored, account_id=account_id, connection_id=connection_id, ring=ring)
    return encrypt_bundle(values, account_id=account_id, connection_id=connection_id, ring=ring)
