"""Signed, timestamped links: the only module that imports itsdangerous.

A token names the account (its login) and carries the fingerprint of its password state, so it
dies at the first password change by any means: single use without a database. Each purpose has its
own salt, so a token for one purpose never works for another. The current SECRET_KEY signs;
SECRET_KEY_FALLBACKS still verify. Nothing in a token is an address or anything else the holder
should not read.
"""

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

SALTS = {
    "reset": "pwdrst.reset",
    "helpdesk": "pwdrst.helpdesk",
    "recovery": "pwdrst.recovery",
}


class TokenError(Exception):
    """A link that cannot be used."""


class TokenExpired(TokenError):
    """The link is older than its lifetime."""


class TokenInvalid(TokenError):
    """The link is malformed, tampered with, signed with an unknown key, or for another purpose."""


class TokenUsed(TokenError):
    """The link is genuine, but the password has changed since it was made (or the account is gone)."""


@dataclass(frozen=True)
class Token:
    """What a verified token says."""

    purpose: str
    login: str
    fingerprint: str
    max_age: int
    extra: str | None = None


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    keys = [*current_app.config["SECRET_KEY_FALLBACKS"], current_app.config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=SALTS[purpose])


def make_token(purpose: str, login: str, fingerprint: str, max_age: int | None = None, extra: str | None = None) -> str:
    """Sign a token for an account's current password state.

    max_age is carried only when the link lives shorter than its purpose's cap (helpdesk and CLI
    links), which keeps the common link short enough for mail clients that wrap lines.
    """
    payload: list = [login, fingerprint]
    if max_age is not None or extra is not None:
        payload.append(int(max_age or 0))
    if extra is not None:
        payload.append(extra)
    return _serializer(purpose).dumps(payload)


def read_token(purpose: str, token: str, cap: int) -> Token:
    """Verify a token's signature and age (never more than cap seconds); raise TokenError."""
    if not isinstance(token, str) or not 10 < len(token) < 1024 or not token.isascii():
        raise TokenInvalid("malformed")
    try:
        payload, signed_at = _serializer(purpose).loads(token, max_age=cap, return_timestamp=True)
    except SignatureExpired as exc:
        raise TokenExpired("expired") from exc
    except (BadData, ValueError, UnicodeDecodeError, TypeError) as exc:
        raise TokenInvalid("invalid") from exc
    if (
        not isinstance(payload, list)
        or len(payload) not in (2, 3, 4)
        or not all(isinstance(p, str) for p in payload[:2])
    ):
        raise TokenInvalid("invalid payload")
    max_age = payload[2] if len(payload) > 2 else cap
    if not isinstance(max_age, int) or isinstance(max_age, bool) or max_age < 0:
        raise TokenInvalid("invalid payload")
    max_age = max_age or cap
    # The token's own lifetime may be shorter than the cap (helpdesk and CLI links carry theirs).
    if (datetime.now(UTC) - signed_at).total_seconds() > max_age:
        raise TokenExpired("expired")
    extra = payload[3] if len(payload) == 4 else None
    return Token(purpose, payload[0], payload[1], max_age, extra if isinstance(extra, str) else None)


def same_state(token: Token, fingerprint: str) -> bool:
    """Return whether the account's password state is still the one the token was made for."""
    return hmac.compare_digest(token.fingerprint.encode(), fingerprint.encode())
