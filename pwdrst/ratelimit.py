"""Rate limits: every limit pwdrst counts by hand, as a named check. The only reader of RATELIMIT_*.

Flask-Limiter's decorators answer 429; the reset request must answer the same page whether or not
it was limited, and a failed login is counted only when it fails. So these checks count by hand in
the same storage (memory, or Redis when RATELIMIT_STORAGE_URI says so), shared by every app server.
If that storage fails, counting goes on in this process's memory (as Flask-Limiter's own fallback
does) and the log says so: a Redis outage must not turn every request into a 500.

Each check builds its own keys: the client address, or the account once it is known.
"""

import logging
import time

from flask import current_app, session
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from pwdrst.extensions import client_address, limiter

logger = logging.getLogger(__name__)


class RateLimited(Exception):
    """Too many attempts of this kind: the page answers 429."""


_fallback = FixedWindowRateLimiter(MemoryStorage())
_last_warning = 0.0


def _strategy(operation, *args):
    global _last_warning
    try:
        return operation(limiter.limiter, *args)
    except Exception as exc:  # noqa: BLE001 - each storage backend raises its own errors (redis, memcached, ...)
        if time.monotonic() - _last_warning > 60:
            _last_warning = time.monotonic()
            logger.warning("rate limit storage unreachable (%s); counting in this process's memory", exc)
        return operation(_fallback, *args)


def _hit(setting: str, *keys: str) -> bool:
    """Count one event under keys against every limit of a setting; return False if any is exceeded."""
    allowed = True
    for item in parse_many(current_app.config[setting]):
        if not _strategy(lambda strategy, i=item: strategy.hit(i, "pwdrst", *keys)):
            allowed = False
    return allowed


def _test(setting: str, *keys: str) -> bool:
    """Return whether one more event under keys would be allowed, without counting it."""
    return all(
        _strategy(lambda strategy, i=item: strategy.test(i, "pwdrst", *keys))
        for item in parse_many(current_app.config[setting])
    )


def identifier_key(identifier: str) -> str:
    """Return the key of a typed login or address before the account is known."""
    return identifier.strip().lower()


# ---------------------------------------------------------------- the named checks


def reset_request() -> bool:
    """Count a reset request from this client address."""
    return _hit("RATELIMIT_RESET_REQUEST", "reset-request", client_address())


def reset_mail(account) -> bool:
    """Count a reset mail for the account and for each of its recovery addresses."""
    results = [_hit("RATELIMIT_RESET_MAIL", "reset-mail-account", account.dn)]
    results += [_hit("RATELIMIT_RESET_MAIL", "reset-mail-address", a.lower()) for a in account.recovery_addresses]
    return all(results)


def link_use() -> None:
    """Count the opening or submitting of a link from this client address; raise RateLimited past the limit."""
    if not _hit("RATELIMIT_LINK_USE", "link-use", client_address()):
        raise RateLimited()


def claim(name: str, seconds: int) -> bool:
    """Claim a one-time event (e.g. the use of a link) for seconds; return False if it was claimed already.

    One atomic increment in the shared storage, so of two app servers or threads only one wins.
    """
    key = f"pwdrst/claim/{name}"
    return _strategy(lambda strategy: strategy.storage.incr(key, max(1, int(seconds)))) == 1


def release(name: str) -> None:
    """Give a claim back (the claimed event did not happen after all)."""
    key = f"pwdrst/claim/{name}"
    _strategy(lambda strategy: strategy.storage.clear(key))


def login_allowed(identifier: str) -> bool:
    """Return whether this client and this identifier may try another login (nothing is counted)."""
    return _test("RATELIMIT_LOGIN_ADDRESS", "login-fail-address", client_address()) and _test(
        "RATELIMIT_LOGIN_ACCOUNT", "login-fail-account", identifier_key(identifier)
    )


def login_failed(identifier: str) -> None:
    """Count a failed login for this client and this identifier."""
    _hit("RATELIMIT_LOGIN_ADDRESS", "login-fail-address", client_address())
    _hit("RATELIMIT_LOGIN_ACCOUNT", "login-fail-account", identifier_key(identifier))


def recovery_mail(account) -> None:
    """Count a recovery-address confirmation mail for the account; raise RateLimited past the limit."""
    if not _hit("RATELIMIT_RECOVERY_MAIL", "recovery-mail", account.dn):
        raise RateLimited()


def strength_limit() -> str:
    """Return the meter's limit, for Flask-Limiter's decorator."""
    return current_app.config["RATELIMIT_STRENGTH"]


def helpdesk_issue_limit() -> str:
    """Return the helpdesk's link-issuing limit, for Flask-Limiter's decorator."""
    return current_app.config["RATELIMIT_HELPDESK_ISSUE"]


def staff_key() -> str:
    """Return the key of a staff member's link issuing."""
    return "helpdesk-issue:" + (session.get("login") or "anonymous")
