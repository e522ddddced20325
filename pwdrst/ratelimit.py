"""Counting limits by hand where a refusal must look like success (no enumeration).

Flask-Limiter's decorators answer 429; the reset request must answer the same page whether or not
it was limited. These helpers use the same storage (memory, or Redis when RATELIMIT_STORAGE_URI
says so), so the counts are shared by every app server.
"""

from limits import parse_many

from pwdrst.extensions import limiter


def hit(limits: str, *keys: str) -> bool:
    """Count one event under keys against every limit; return False if any limit is exceeded."""
    allowed = True
    for item in parse_many(limits):
        if not limiter.limiter.hit(item, "pwdrst", *keys):
            allowed = False
    return allowed


def test(limits: str, *keys: str) -> bool:
    """Return whether one more event under keys would be allowed, without counting it."""
    return all(limiter.limiter.test(item, "pwdrst", *keys) for item in parse_many(limits))
