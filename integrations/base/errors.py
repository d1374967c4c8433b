"""The typed errors every adapter raises. Each carries a message a user can act on.

`permanent` tells the caller whether trying again later can help: a wrong key or a missing
permission stays wrong until someone changes it (permanent), a timeout or a 429 does not.
Messages never contain a secret: they are built from vendor-visible facts only.
"""

from __future__ import annotations


class PsaError(Exception):
    permanent = True
    kind = "error"

    def __init__(self, message: str, *, status: int | None = None, vendor_message: str = ""):
        super().__init__(message)
        self.message = message
        self.status = status
        # What the PSA itself said (already redacted), for the log; `message` is for people.
        self.vendor_message = vendor_message

    def __str__(self) -> str:
        return self.message


class AuthFailedError(PsaError):
    """The PSA refused the credentials: re-enter them (never retried: Autotask locks users)."""

    kind = "auth_failed"


class PermissionMissingError(PsaError):
    """The API user lacks a permission; `which` names it in the PSA's own words."""

    kind = "permission_missing"

    def __init__(self, message: str, *, which: str, fix: str = "", **kwargs):
        super().__init__(message, **kwargs)
        self.which = which
        self.fix = fix


class NotFoundError(PsaError):
    kind = "not_found"


class InvalidError(PsaError):
    """The PSA rejected a value; `field` names it (the PSA's field name, or ours for forms)."""

    kind = "invalid"

    def __init__(self, message: str, *, field: str = "", **kwargs):
        super().__init__(message, **kwargs)
        self.field = field


class RateLimitedError(PsaError):
    kind = "rate_limited"
    permanent = False

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class UnavailableError(PsaError):
    """Could not reach the PSA, or it failed (5xx, timeout, not JSON). Worth retrying later.

    `outcome_unknown` is set when a write was sent but no answer came back: the write may
    have happened, so the caller must look for it before sending it again.
    """

    kind = "unavailable"
    permanent = False

    def __init__(self, message: str, *, outcome_unknown: bool = False, **kwargs):
        super().__init__(message, **kwargs)
        self.outcome_unknown = outcome_unknown


class BlockedError(PsaError):
    """A business rule stops the work (a future-dated contract, a host we may not call...)."""

    kind = "blocked"
