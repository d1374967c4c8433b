"""Redaction of secrets from anything the hub records about a PSA request.

Three nets, because each catches what the others miss: secret-bearing headers by name,
secret-bearing fields by name (JSON and form bodies, query strings), and the known secret
values of the connection wherever they appear (a PSA echoing a key in an error body).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "[redacted]"
EXCERPT_LIMIT = 2000

SECRET_HEADERS = frozenset(
    name.lower()
    for name in (
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "Set-Cookie",
        "X-Api-Key",
        "X-Hub-Signature",
        "x-content-signature",
    )
)

_SECRET_FIELD = re.compile(
    r"(pass(word)?|secret|token|private[_-]?key|api[_-]?key|client[_-]?secret|authorization|credential|signature)",
    re.IGNORECASE,
)
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_FIELD.search(name or ""))


def redact_headers(headers: Mapping[str, str], secret_headers: Iterable[str] = ()) -> dict[str, str]:
    """`secret_headers`: the PSA's own credential headers (its provider's `secret_headers`)."""
    names = SECRET_HEADERS | {name.lower() for name in secret_headers}
    return {k: (MASK if k.lower() in names or is_secret_name(k) else v) for k, v in headers.items()}


def _redact_structure(value, secrets: Iterable[str] = ()):
    if isinstance(value, dict):
        return {k: (MASK if is_secret_name(str(k)) else _redact_structure(v, secrets)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_structure(item, secrets) for item in value]
    if isinstance(value, str):
        # Before json.dumps: a secret holding `"` or `\` no longer matches once escaped.
        return redact_values(value, secrets)
    return value


def redact_values(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    parts = urlsplit(url)
    secrets = list(secrets)
    # Values are compared decoded: "api@x.example" travels as "api%40x.example".
    query = urlencode(
        [
            (k, MASK if is_secret_name(k) else redact_values(v, secrets))
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    return redact_values(urlunsplit(parts._replace(query=query)), secrets)


def redact_body(body, secrets: Iterable[str] = (), limit: int = EXCERPT_LIMIT) -> str:
    """A redacted, shortened text of a body: a dict or list (JSON or form fields as sent),
    or the bytes/text of a response."""
    if body is None or body == b"" or body == "":
        return ""
    secrets = list(secrets)
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            pass  # plain text or HTML: only the known secret values can be masked
    if not isinstance(body, str):
        body = json.dumps(_redact_structure(body, secrets), ensure_ascii=False, default=str)
    text = redact_values(body, secrets)
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"
