"""The directory's domain objects (what views get instead of LDAP entries) and value decoding."""

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class Account:
    """A person's account as pwdrst sees it."""

    dn: str
    login: str
    display_name: str
    given_name: str
    surname: str
    addresses: tuple[str, ...]
    recovery_addresses: tuple[str, ...]
    locked: bool
    password_expired: bool
    password_changed_at: datetime | None
    # A digest of the password state and the recovery addresses: a reset link dies when either moves.
    fingerprint: str
    # The password was set by an administrator and must be changed (pwdReset; AD: pwdLastSet = 0).
    must_change: bool = False
    # The stored password values the fingerprint was made from: a reset by link asserts them, so
    # that of two uses of one link at the same moment only one can write. Never shown or logged.
    password_state: tuple = field(default=(), repr=False, compare=False)
    # The account is disabled (AD's userAccountControl ACCOUNTDISABLE); OpenLDAP has no such state.
    disabled: bool = False
    # A digest of the password state alone: a session ends when it moves (a change anywhere).
    password_fingerprint: str = ""
    # The entry's revision where the directory keeps one (OpenLDAP: entryCSN, microseconds): a write
    # asserting it succeeds only if nothing of the entry changed since it was read. Not a secret.
    revision: str = ""

    @property
    def all_addresses(self) -> tuple[str, ...]:
        """Return the university and recovery addresses, each once."""
        seen: set[str] = set()
        unique = []
        for address in self.addresses + self.recovery_addresses:
            if address.lower() not in seen:
                seen.add(address.lower())
                unique.append(address)
        return tuple(unique)


@dataclass(frozen=True)
class Authentication:
    """A successful bind as a person, with the policy's warnings."""

    account: Account
    expires_in: int | None = None


def fingerprint(dn: str, state: str) -> str:
    """Return a short digest of an account's password state (not the hash itself)."""
    digest = hmac.new(b"pwdrst password state", f"{dn}\n{state}".encode(), hashlib.sha256).digest()
    # 48 bits: enough to notice a change (the token's signature, not this, stops forgery).
    return base64.urlsafe_b64encode(digest[:6]).decode("ascii")


def first(values, default=""):
    """Return the first value of an attribute as a string."""
    if isinstance(values, (list, tuple)):
        return str(values[0]) if values else default
    return default if values in (None, b"", "") else str(values)


def every(values) -> tuple[str, ...]:
    """Return every value of an attribute as strings."""
    if values in (None, "", b""):
        return ()
    if not isinstance(values, (list, tuple)):
        values = [values]
    return tuple(str(v) for v in values)


def integer(values, default: int = 0) -> int:
    """Return the first value of an attribute as an integer."""
    try:
        return int(first(values) or default)
    except ValueError:
        return default


def parse_time(value) -> datetime | None:
    """Return an LDAP GeneralizedTime as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = first(value)
    if not text:
        return None
    for fmt in ("%Y%m%d%H%M%SZ", "%Y%m%d%H%M%S.%fZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
# AD's "never" in a duration attribute (the most negative 64-bit number).
AD_NEVER = -0x8000000000000000


def from_filetime(value) -> datetime | None:
    """Return an AD FILETIME (100 ns since 1601 UTC; 0 = never) as an aware datetime."""
    ticks = integer(value)
    if ticks <= 0 or ticks >= 0x7FFFFFFFFFFFFFFF:
        return None
    return datetime.fromtimestamp((ticks - 116444736000000000) / 10_000_000, UTC)


def interval_seconds(value) -> int | None:
    """Return an AD duration (negative 100 ns units) in seconds; None for "never"."""
    ticks = integer(value)
    if ticks == AD_NEVER:
        return None
    return abs(ticks) // 10_000_000
