"""OAuth2 client-credentials tokens for Halo (fact sheet sections 1 and 2).

A token is asked for with the client id and secret, kept until a minute before `expires_in`
runs out, and thrown away when the resource server answers 401 so that one fresh token can be
tried (HaloClient.request does the retry). Nothing relies on a refresh token: like every public
Halo client, we simply ask again.

Vendor code may not use Django's cache (DESIGN.md rule 1), so the caller lends a TokenStore.
Django's cache object already has this shape; the service layer should wrap it so values are
encrypted at rest, since a bearer token is a credential for its lifetime.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from integrations.base.errors import UnavailableError

if TYPE_CHECKING:
    from integrations.halo.client import HaloClient

# Refresh this long before Halo says the token expires, so a token never dies in flight.
EXPIRY_MARGIN = 60.0
# Used when a token answer has no usable expires_in (its lifetime is UNCONFIRMED; 3600 is typical).
FALLBACK_LIFETIME = 300.0
DEFAULT_SCOPE = "all"


class TokenStore(Protocol):
    """Where tokens are kept between calls, by key. Django's cache API fits as is; `ttl` is
    in seconds, after which get() may answer None."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, ttl: float) -> None: ...


class MemoryTokenStore:
    """The default store: one process, honouring the timeout like a cache would."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._values: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, key: str) -> Any:
        with self._lock:
            value, until = self._values.get(key, (None, 0.0))
            if self._clock() >= until:
                self._values.pop(key, None)
                return None
            return value

    def set(self, key: str, value: Any, ttl: float) -> None:
        with self._lock:
            self._values[key] = (value, self._clock() + ttl)


def token_url(auth_server: str, resource_server: str) -> str:
    """Halo's token endpoint: the authorisation server plus /token, which by default is the
    web app's /auth (fact sheet section 1)."""
    base = (auth_server or resource_server.rstrip("/") + "/auth").rstrip("/")
    return base if base.endswith("/token") else base + "/token"


class HaloAuth:
    def __init__(
        self,
        client: HaloClient,
        *,
        token_url: str,
        tenant: str,
        client_id: str,
        client_secret: str,
        scope: str = DEFAULT_SCOPE,
        store: TokenStore | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.token_url = token_url
        self.tenant = tenant
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope or DEFAULT_SCOPE
        self.store = store if store is not None else MemoryTokenStore()
        # Wall-clock time: a shared store hands tokens between processes and machines.
        self.clock = clock
        # A hash of everything that makes a token: new credentials never reuse an old token,
        # and the key reveals nothing about the secret.
        material = "\n".join((token_url, tenant, client_id, client_secret, self.scope))
        self.key = "halo-token:" + hashlib.sha256(material.encode()).hexdigest()[:40]
        # This instance's copy, so a run of requests does not read the shared store each time.
        self._held: dict | None = None

    def token(self) -> str:
        for cached in (self._held, self.store.get(self.key)):
            if isinstance(cached, dict) and cached.get("access_token") and self.clock() < cached.get("refresh_at", 0):
                self._held = cached
                self.client.add_secret(cached["access_token"])
                return cached["access_token"]
        return self._fetch()

    def invalidate(self, token: str) -> None:
        """Forget `token` after a 401, unless another worker has already replaced it."""
        self._held = None
        cached = self.store.get(self.key)
        if not isinstance(cached, dict) or cached.get("access_token") == token:
            # Overwritten rather than deleted: a store needs nothing but get and set.
            self.store.set(self.key, None, 1)

    def _fetch(self) -> str:
        body = self.client.token(
            self.token_url,
            tenant=self.tenant,
            client_id=self.client_id,
            client_secret=self._client_secret,
            scope=self.scope,
        )
        access_token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access_token, str) or not access_token:
            raise UnavailableError(
                "Halo's authorisation server answered without an access token. Check the Authorisation "
                "Server URL (normally the Resource Server followed by /auth)."
            )
        self.client.add_secret(access_token)
        lifetime = body.get("expires_in")
        try:
            lifetime = float(lifetime)
        except (TypeError, ValueError):
            lifetime = FALLBACK_LIFETIME
        if lifetime <= 0:
            lifetime = FALLBACK_LIFETIME
        # A short-lived token would be stale at once with a fixed margin; keep at least half its life.
        usable = lifetime - min(EXPIRY_MARGIN, lifetime / 2)
        self._held = {"access_token": access_token, "refresh_at": self.clock() + usable}
        self.store.set(self.key, self._held, usable)
        return access_token
