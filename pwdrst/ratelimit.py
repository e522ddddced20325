"""Rate limits: every limit pwdrst counts by hand, as a named check. The only reader of RATELIMIT_*.

Flask-Limiter's decorators answer 429; the reset request must answer the same page whether or not
it was limited, and a failed login is counted only when it fails. So these checks count by hand in
the same storage (memory, or Redis when RATELIMIT_STORAGE_URI says so), shared by every app server.
If that storage fails, counting goes on in this process's memory (as Flask-Limiter's own fallback
does) and the log says so: a Redis outage must not turn every request into a 500.

Each check builds its own keys: the client address, or the account once it is known.

Login attempts are counted before the bind, in one atomic step with the check (a storage
increment), so that simultaneous attempts cannot all pass a check made before any was counted.
Per account the window moves: a fixed one would let twice the limit through around its edge, and
the limit must stay below the directory's lockout threshold (pwdMaxFailure).
"""

import heapq
import logging
import threading
import time

from flask import current_app, g
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from pwdrst import metrics
from pwdrst.config import ConfigError
from pwdrst.directory import Account, Directory, DirectoryError, fold_identifier
from pwdrst.extensions import client_address, limiter

logger = logging.getLogger(__name__)


class RateLimited(Exception):
    """Too many attempts of this kind: the page answers 429."""


class FlatMemoryStorage(MemoryStorage):
    """limits' memory storage with expiry in a heap: the cost of a hit does not grow with the keys held.

    The parent starts a thread after (nearly) every hit that walks every key it holds (its private
    __expire_events), so each check costs time in proportion to the number of clients and accounts
    seen in the last window. Here a heap of (expiry, key) frees what has expired, a few keys at a
    time, on the next hit. Registered for memory://, so Flask-Limiter's own storage is this one too.
    """

    STORAGE_SCHEME = ["memory"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._heap: list[tuple[float, str]] = []
        self._heap_lock = threading.Lock()

    # The parent calls this after every change to start its sweep of all keys; the heap replaces it.
    def _MemoryStorage__schedule_expiry(self) -> None:
        pass

    def _expire_some(self, now: float) -> None:
        with self._heap_lock:
            due = []
            while self._heap and self._heap[0][0] <= now:
                due.append(heapq.heappop(self._heap)[1])
        for key in due:
            with self.locks[key]:
                if self.expirations.get(key, now + 1) <= now:
                    self.storage.pop(key, None)
                    self.expirations.pop(key, None)
                events = self.events.get(key)
                if events is not None:
                    # Newest first, as the parent keeps them.
                    while events and events[-1].expiry <= now:
                        events.pop()
                    if not events:
                        self.events.pop(key, None)
                if key not in self.storage and key not in self.events:
                    self.locks.pop(key, None)

    def _remember(self, expiry: float, key: str) -> None:
        with self._heap_lock:
            heapq.heappush(self._heap, (expiry, key))

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Count under key (see MemoryStorage.incr), then free a few expired keys."""
        now = time.time()
        self._expire_some(now)
        known = key in self.expirations
        value = super().incr(key, expiry, amount)
        if not known:
            self._remember(self.expirations.get(key, now + expiry), key)
        return value

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Take an entry in key's moving window (see MemoryStorage.acquire_entry), then free a few expired keys."""
        now = time.time()
        self._expire_some(now)
        acquired = super().acquire_entry(key, limit, expiry, amount)
        if acquired:
            self._remember(now + expiry, key)
        return acquired


_fallback_storage = FlatMemoryStorage()
_fallback = FixedWindowRateLimiter(_fallback_storage)
_fallback_moving = MovingWindowRateLimiter(_fallback_storage)
_last_warning = 0.0


def _strategy(operation, *args, moving: bool = False):
    global _last_warning
    try:
        strategy = MovingWindowRateLimiter(limiter.storage) if moving else limiter.limiter
        return operation(strategy, *args)
    except Exception as exc:  # noqa: BLE001 - each storage backend raises its own errors (redis, memcached, ...)
        if time.monotonic() - _last_warning > 60:
            _last_warning = time.monotonic()
            logger.warning("rate limit storage unreachable (%s); counting in this process's memory", exc)
        return operation(_fallback_moving if moving else _fallback, *args)


def _hit(setting: str, *keys: str) -> bool:
    """Count one event under keys against every limit of a setting; return False if any is exceeded."""
    allowed = True
    for item in parse_many(current_app.config[setting]):
        if not _strategy(lambda strategy, i=item: strategy.hit(i, "pwdrst", *keys)):
            allowed = False
    if not allowed:
        metrics.count_rate_limited(setting)
    return allowed


def identifier_key(identifier: str) -> str:
    """Return the key of a typed login or address before the account is known (NFKC, case folded)."""
    return "identifier:" + fold_identifier(identifier)


def account_key(account: Account) -> str:
    """Return the key of a known account: its DN, whatever spelling or alias named it."""
    return "account:" + account.dn.lower()


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


def login_attempt_address() -> bool:
    """Count a login attempt from this client address before the bind; return False past the limit."""
    return _hit("RATELIMIT_LOGIN_ADDRESS", "login-fail-address", client_address())


def login_succeeded_address() -> None:
    """Give back the attempt a successful login counted for this client address (only failures count)."""
    for item in parse_many(current_app.config["RATELIMIT_LOGIN_ADDRESS"]):
        _strategy(lambda strategy, i=item: strategy.hit(i, "pwdrst", "login-fail-address", client_address(), cost=-1))


def login_attempt(target: "Account | str") -> bool:
    """Count a bind about to be tried on an account (or an unknown identifier); return False past the limit.

    The count is the check: one atomic step, so N simultaneous attempts get at most the limit's binds.
    """
    key = account_key(target) if isinstance(target, Account) else identifier_key(target)
    allowed = True
    for item in parse_many(current_app.config["RATELIMIT_LOGIN_ACCOUNT"]):
        if not _strategy(lambda strategy, i=item: strategy.hit(i, "pwdrst", "login-fail-account", key), moving=True):
            allowed = False
    if not allowed:
        metrics.count_rate_limited("RATELIMIT_LOGIN_ACCOUNT")
    return allowed


def login_succeeded(account: Account) -> None:
    """Forget the account's failed logins, as the directory does after a successful bind."""
    key = account_key(account)
    for item in parse_many(current_app.config["RATELIMIT_LOGIN_ACCOUNT"]):
        _strategy(lambda strategy, i=item: strategy.clear(i, "pwdrst", "login-fail-account", key), moving=True)
    login_succeeded_address()


def login_account_budget() -> int:
    """Return the fewest failed logins per account that RATELIMIT_LOGIN_ACCOUNT allows in one window."""
    return min(item.amount for item in parse_many(current_app.config["RATELIMIT_LOGIN_ACCOUNT"]))


def lockout_margin(threshold: int | None) -> str | None:
    """Return why RATELIMIT_LOGIN_ACCOUNT could lock accounts at this pwdMaxFailure, or None if it cannot."""
    config = current_app.config
    if not threshold:
        return None
    allowed = login_account_budget()
    if allowed < threshold:
        return None
    return (
        f"RATELIMIT_LOGIN_ACCOUNT allows {allowed} failed logins per account, but the directory locks an "
        f"account after {threshold} (pwdMaxFailure of {config['LDAP_PASSWORD_POLICY_DN']}): anyone could "
        f"lock people out through pwdrst. Set RATELIMIT_LOGIN_ACCOUNT below {threshold}."
    )


def check_lockout_margin(app) -> int | None:
    """Refuse to start when the login limit reaches the directory's lockout threshold; return the threshold.

    A directory that cannot be reached now does not stop the start: the log says the check was skipped.
    """
    # A Directory of its own, closed at once: the app's keeps its failover state, and no worker
    # forked after start-up inherits a connection opened here.
    asker = Directory(app.config)
    try:
        threshold = asker.lockout_threshold()
    except DirectoryError as exc:
        logger.warning("could not read the directory's lockout threshold (pwdMaxFailure) at start: %s", exc)
        return None
    finally:
        asker.close()
    with app.app_context():
        problem = lockout_margin(threshold)
    if problem:
        raise ConfigError(problem)
    return threshold


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
    person = g.get("person")
    return "helpdesk-issue:" + (person.login if person else "anonymous")
