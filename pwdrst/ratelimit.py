"""Counting limits by hand where a refusal must look like success (no enumeration).

Flask-Limiter's decorators answer 429; the reset request must answer the same page whether or not
it was limited. These helpers use the same storage (memory, or Redis when RATELIMIT_STORAGE_URI
says so), so the counts are shared by every app server. If that storage fails, counting goes on in
this process's memory (as Flask-Limiter's own fallback does) and the log says so: a Redis outage
must not turn every request into a 500.
"""

import logging
import time

from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from pwdrst.extensions import limiter

logger = logging.getLogger(__name__)

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


def hit(limits: str, *keys: str) -> bool:
    """Count one event under keys against every limit; return False if any limit is exceeded."""
    allowed = True
    for item in parse_many(limits):
        if not _strategy(lambda strategy, i=item: strategy.hit(i, "pwdrst", *keys)):
            allowed = False
    return allowed


def test(limits: str, *keys: str) -> bool:
    """Return whether one more event under keys would be allowed, without counting it."""
    return all(_strategy(lambda strategy, i=item: strategy.test(i, "pwdrst", *keys)) for item in parse_many(limits))
