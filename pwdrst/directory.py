"""The directory: every LDAP operation pwdrst performs, in domain terms.

This is the only module that imports ldap3. Views call verbs on `directory` (find_account,
authenticate, change_password, reset_password, ...) and get `Account` objects or domain errors.

Connections are kept per thread (a SYNC ldap3 connection is not thread-safe) and reused: one
bound as the service account, one that re-binds as each person. ldap3 binds every new client
socket to a local port before connecting, so opening a connection per operation runs out of ports
under load. A stale connection (server restarted) is replaced once; a server that refuses or does
not answer within LDAP_TIMEOUT gives DirectoryUnavailable, and new connections then start at the
next server of LDAP_URL.
"""

import base64
import hashlib
import hmac
import math
import re
import ssl
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import ldap3
from flask import current_app
from ldap3.core import exceptions as ldap_exc
from ldap3.operation.search import compile_filter, parse_filter
from ldap3.utils.asn1 import encode as asn1_encode
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, namedval, tag, univ
from werkzeug.local import LocalProxy

PPOLICY_OID = "1.3.6.1.4.1.42.2.27.8.5.1"
ASSERTION_OID = "1.3.6.1.1.12"  # RFC 4528
RELAX_OID = "1.3.6.1.4.1.4203.666.5.12"
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"  # RFC 2696

# Longest identifier worth a directory round trip (RFC 5321 limits an address to 254 octets).
MAX_IDENTIFIER_LENGTH = 256

# Most accounts a login tries one password on when an address is shared (the seed's 3.4); beyond
# that the address says nothing about the person, and the login is refused as invalid.
MAX_LOGIN_CANDIDATES = 3


# ---------------------------------------------------------------- errors


class DirectoryError(Exception):
    """Base class of everything the directory layer raises."""


class DirectoryUnavailable(DirectoryError):
    """No directory server answered in time."""


class InvalidCredentials(DirectoryError):
    """The login or the password is wrong."""


class AccountLocked(DirectoryError):
    """The password policy locked the account after failed logins."""


class PasswordExpired(DirectoryError):
    """The password is right but expired, or must be changed after an administrator set it.

    `must_change` says it is the latter (OpenLDAP's pwdReset, AD's pwdLastSet = 0). For an expired
    one, `grace_remaining` is the number of grace logins left after this one and `bound` says
    whether the bind itself succeeded (a grace login) or was refused (none left).
    """

    def __init__(self, account: "Account", grace_remaining: int, bound: bool, must_change: bool = False):
        super().__init__("password must be changed" if must_change else "password expired")
        self.account = account
        self.grace_remaining = grace_remaining
        self.bound = bound
        self.must_change = must_change


class PasswordRejected(DirectoryError):
    """The directory refused a new password; `reason` is a code the UI translates."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AccountChanged(DirectoryError):
    """The password changed between reading the account and writing it (a link used twice at once)."""


class AmbiguousAccount(DirectoryError):
    """Two or more accounts match one identifier: a data fault, never resolved by guessing."""

    def __init__(self, dns):
        super().__init__("ambiguous account")
        self.dns = tuple(dns)


# ppolicy error codes (draft-behera-ldap-password-policy, section 6.2) and the reasons they map to.
PPOLICY_ERRORS = {
    0: "expired",
    1: "locked",
    2: "change_after_reset",
    3: "change_not_allowed",
    4: "must_supply_old",
    5: "insufficient_quality",
    6: "too_short",
    7: "too_young",
    8: "in_history",
}


# ---------------------------------------------------------------- ppolicy response control


class _PolicyWarning(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType(
            "timeBeforeExpiration",
            univ.Integer().subtype(implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 0)),
        ),
        namedtype.NamedType(
            "graceAuthNsRemaining",
            univ.Integer().subtype(implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1)),
        ),
    )


class _PolicyError(univ.Enumerated):
    namedValues = namedval.NamedValues(*((name, code) for code, name in PPOLICY_ERRORS.items()))


class _PolicyResponse(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType(
            "warning",
            _PolicyWarning().subtype(explicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 0)),
        ),
        namedtype.OptionalNamedType(
            "error",
            _PolicyError().subtype(implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1)),
        ),
    )


@dataclass(frozen=True)
class PolicyResponse:
    """The decoded password-policy response control."""

    error: int | None = None
    time_before_expiration: int | None = None
    grace_remaining: int | None = None


def decode_policy_control(value: bytes | None) -> PolicyResponse:
    """Decode the BER value of a password-policy response control (ldap3 leaves it raw)."""
    if not value:
        return PolicyResponse()
    try:
        decoded, _ = ber_decoder.decode(value, asn1Spec=_PolicyResponse())
    except PyAsn1Error:
        return PolicyResponse()
    error = int(decoded["error"]) if decoded["error"].isValue else None
    expiry = grace = None
    warning = decoded["warning"]
    if warning.isValue:
        name = warning.getName()
        if name == "timeBeforeExpiration":
            expiry = int(warning[name])
        elif name == "graceAuthNsRemaining":
            grace = int(warning[name])
    return PolicyResponse(error, expiry, grace)


def _policy_of(result: dict) -> PolicyResponse:
    control = (result.get("controls") or {}).get(PPOLICY_OID)
    return decode_policy_control(control["value"] if control else None)


# ---------------------------------------------------------------- domain objects


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
    fingerprint: str
    # The password was set by an administrator and must be changed (pwdReset; AD: pwdLastSet = 0).
    must_change: bool = False
    # The stored password values the fingerprint was made from: a reset by link asserts them, so
    # that of two uses of one link at the same moment only one can write. Never shown or logged.
    password_state: tuple = field(default=(), repr=False, compare=False)

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


# ---------------------------------------------------------------- helpers


def _first(values, default=""):
    if isinstance(values, (list, tuple)):
        return str(values[0]) if values else default
    return default if values in (None, b"", "") else str(values)


def _all(values) -> tuple[str, ...]:
    if values in (None, "", b""):
        return ()
    if not isinstance(values, (list, tuple)):
        values = [values]
    return tuple(str(v) for v in values)


def _parse_time(value) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = _first(value)
    if not text:
        return None
    for fmt in ("%Y%m%d%H%M%SZ", "%Y%m%d%H%M%S.%fZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _ad_password(password: bytes) -> bytes:
    # Active Directory takes the password as a quoted UTF-16LE string in unicodePwd.
    return ('"' + password.decode("utf-8") + '"').encode("utf-16-le")


def _as_bytes(password: str | bytes) -> bytes:
    # Passwords travel as UTF-8 bytes: ldap3 would SASLprep a str, storing a different string
    # from the one mail and SSO servers present at login.
    return password if isinstance(password, bytes) else password.encode("utf-8")


def parse_servers(urls) -> list[tuple[str, int, bool]]:
    """Return (host, port, use_ssl) for each LDAP URL; raise ValueError naming a bad one."""
    if isinstance(urls, str):
        urls = urls.replace(",", " ").split()
    servers = []
    for url in urls:
        parts = urlsplit(url.strip().rstrip("/"))
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"{url!r} is not an ldap:// or ldaps:// URL of a server")
        try:
            port = parts.port or (636 if parts.scheme == "ldaps" else 389)
        except ValueError:
            raise ValueError(f"{url!r} has an invalid port") from None
        servers.append((parts.hostname, port, parts.scheme == "ldaps"))
    if not servers:
        raise ValueError("no server given")
    return servers


def fold_identifier(identifier: str) -> str:
    """Return the spelling of a login or address that counts as the same: NFKC, case folded.

    Full-width letters (NFKC) and a dotted capital I (folded to i + U+0307, whose dot goes) name the
    same account as their plain spelling; the directory matches logins and addresses without case.
    """
    folded = unicodedata.normalize("NFKC", (identifier or "").strip()).casefold()
    return unicodedata.normalize("NFKC", folded.replace("i\u0307", "i"))


def is_valid_dn(dn: str) -> bool:
    """Return whether dn parses as a distinguished name."""
    try:
        return bool(parse_dn(dn))
    except (ldap_exc.LDAPInvalidDnError, ValueError, TypeError):
        return False


_COMMUNICATION_ERRORS = (
    ldap_exc.LDAPCommunicationError,
    ldap_exc.LDAPStartTLSError,
    ldap_exc.LDAPResponseTimeoutError,
    ldap_exc.LDAPMaximumRetriesError,
    OSError,
)


# ---------------------------------------------------------------- the directory


class Directory:
    """Domain operations on one LDAP directory (a failover pool of servers)."""

    def __init__(self, config):
        self.flavour = config["LDAP_FLAVOUR"]
        self.base_dn = config["LDAP_BASE_DN"]
        self.bind_dn = config["LDAP_BIND_DN"]
        self._bind_password = _as_bytes(config["LDAP_BIND_PASSWORD"] or "")
        self.login_attributes = tuple(config["LDAP_LOGIN_ATTRIBUTES"])
        self.address_attributes = tuple(a for a in self.login_attributes[1:])
        self.recovery_attribute = config["LDAP_RECOVERY_ATTRIBUTE"]
        self.display_name_attributes = (config["LDAP_DISPLAY_NAME_ATTRIBUTE"], "cn")
        self.user_filter = config["LDAP_USER_FILTER"]
        self.member_attribute = config["LDAP_GROUP_MEMBER_ATTRIBUTE"]
        self.default_policy_dn = config["LDAP_PASSWORD_POLICY_DN"]
        self.timeout = float(config["LDAP_TIMEOUT"])
        tls = None
        if config["LDAP_START_TLS"] or config["LDAP_CA_FILE"] or any(s[2] for s in parse_servers(config["LDAP_URL"])):
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=config["LDAP_CA_FILE"])
        self.start_tls = bool(config["LDAP_START_TLS"])
        self.servers = [
            ldap3.Server(host, port=port, use_ssl=use_ssl, tls=tls, get_info=ldap3.NONE, connect_timeout=self.timeout)
            for host, port, use_ssl in parse_servers(config["LDAP_URL"])
        ]
        self._preferred = 0
        self._local = threading.local()
        self._open_connections: set = set()
        self._generation = 0
        self._lock = threading.Lock()
        self._policy_cache: dict[str, tuple[float, dict]] = {}
        # Called with (verb, outcome, seconds) after every operation: the metrics (pwdrst.metrics).
        self.observer = None

    # -- connections

    def _open(self, bind_as_service: bool) -> ldap3.Connection:
        """Open a connection to the first server that answers, starting at the preferred one."""
        last_error: Exception | None = None
        count = len(self.servers)
        start = self._preferred
        for offset in range(count):
            index = (start + offset) % count
            conn = ldap3.Connection(
                self.servers[index],
                user=self.bind_dn if bind_as_service else None,
                password=self._bind_password if bind_as_service else None,
                authentication=ldap3.SIMPLE,
                # ldap3 packs this into SO_RCVTIMEO with struct.pack("LL"): whole seconds only.
                receive_timeout=max(1, math.ceil(self.timeout)),
                raise_exceptions=False,
                auto_referrals=False,
                read_only=False,
            )
            # ldap3 would skip an address that failed in the last few seconds ("invalid server
            # address"); failover and recovery are ours to decide.
            self.servers[index].reset_availability()
            try:
                conn.open(read_server_info=False)
                if self.start_tls:
                    conn.start_tls(read_server_info=False)
                if bind_as_service and not conn.bind(read_server_info=False):
                    conn.unbind()
                    raise DirectoryUnavailable(f"the service account cannot bind: {conn.result['description']}")
            except _COMMUNICATION_ERRORS as exc:
                last_error = exc
                self._preferred = (index + 1) % count
                _close(conn)
                # A server that accepted but did not answer already used the whole timeout.
                if isinstance(exc, ldap_exc.LDAPSocketReceiveError):
                    break
                continue
            self._preferred = index
            with self._lock:
                self._open_connections.add(conn)
            return conn
        raise DirectoryUnavailable(f"no directory server answered: {last_error}") from last_error

    def _run(self, kind: str, operation):
        """Run operation(conn) on this thread's connection of kind, replacing a stale one once; observed."""
        if self.observer is None:
            return self._run_once(kind, operation)
        started, outcome = time.perf_counter(), "ok"
        try:
            return self._run_once(kind, operation)
        except DirectoryError as exc:
            outcome = _outcome_of(exc)
            raise
        finally:
            self.observer(_verb(), outcome, time.perf_counter() - started)

    def _run_once(self, kind: str, operation):
        for attempt in (0, 1):
            generation, conn = getattr(self._local, kind, (None, None))
            fresh = conn is None or generation != self._generation
            if fresh:
                conn = self._open(bind_as_service=(kind == "service"))
                setattr(self._local, kind, (self._generation, conn))
            try:
                return operation(conn)
            except _COMMUNICATION_ERRORS as exc:
                setattr(self._local, kind, (None, None))
                self._forget(conn)
                timed_out = isinstance(exc, ldap_exc.LDAPSocketReceiveError) and "timed out" in str(exc)
                if timed_out:
                    self._preferred = (self._preferred + 1) % len(self.servers)
                if fresh or attempt or timed_out:
                    raise DirectoryUnavailable(str(exc)) from exc
        raise AssertionError("unreachable")

    def _forget(self, conn) -> None:
        with self._lock:
            self._open_connections.discard(conn)
        _close(conn)

    def close(self) -> None:
        """Close every connection of every thread (at shutdown); later operations reconnect."""
        with self._lock:
            connections, self._open_connections = self._open_connections, set()
            self._generation += 1
        for conn in connections:
            _close(conn)

    def _search(self, base: str, search_filter: str, attributes, scope=ldap3.SUBTREE, size_limit=0):
        def search(conn):
            conn.search(base, search_filter, scope, attributes=attributes, size_limit=size_limit)
            result = conn.result["result"]
            if result in (0, 4):  # success, sizeLimitExceeded
                return [e for e in conn.response if e.get("type") == "searchResEntry"]
            if result == 32:  # noSuchObject
                return []
            if result in (51, 52, 80):  # busy, unavailable, other
                raise DirectoryUnavailable(conn.result["description"])
            raise DirectoryError(f"search failed: {conn.result['description']}")

        return self._run("service", search)

    # -- reading accounts

    @property
    def _account_attributes(self) -> list[str]:
        attrs = {"givenName", "sn", "cn", *self.login_attributes, *self.display_name_attributes}
        attrs.add(self.recovery_attribute)
        if self.flavour == "ad":
            attrs |= {"pwdLastSet", "lockoutTime", "userAccountControl"}
        else:
            attrs |= {
                "userPassword",
                "pwdChangedTime",
                "pwdAccountLockedTime",
                "pwdPolicySubentry",
                "pwdGraceUseTime",
                "pwdReset",
            }
        return sorted(attrs)

    def _account(self, entry) -> Account:
        attrs = entry["attributes"]
        raw = entry.get("raw_attributes") or {}
        display = next((_first(attrs.get(a)) for a in self.display_name_attributes if _first(attrs.get(a))), "")
        addresses = []
        for name in self.address_attributes:
            addresses += [a for a in _all(attrs.get(name)) if "@" in a and a not in addresses]
        if self.flavour == "ad":
            changed = _parse_time(attrs.get("pwdLastSet"))
            locked = bool(_parse_time(attrs.get("lockoutTime")) and _parse_time(attrs.get("lockoutTime")).year > 1601)
            expired = False
            must_change = _first(attrs.get("pwdLastSet")) == "0"
            state = _first(attrs.get("pwdLastSet"))
        else:
            changed = _parse_time(attrs.get("pwdChangedTime"))
            policy = self._policy(_first(attrs.get("pwdPolicySubentry")) or self.default_policy_dn)
            locked = _is_locked(_first(attrs.get("pwdAccountLockedTime")), policy)
            expired = _is_expired(changed, policy) or bool(_all(attrs.get("pwdGraceUseTime")))
            must_change = _first(attrs.get("pwdReset")).upper() == "TRUE"
            # The stored hash carries a fresh salt at every change, so it moves even when two
            # changes fall in the same second of pwdChangedTime.
            state = "|".join(sorted(_all(attrs.get("userPassword")))) + "|" + _first(attrs.get("pwdChangedTime"))
        return Account(
            dn=entry["dn"],
            login=_first(attrs.get(self.login_attributes[0])),
            display_name=display,
            given_name=_first(attrs.get("givenName")),
            surname=_first(attrs.get("sn")),
            addresses=tuple(addresses),
            recovery_addresses=_all(attrs.get(self.recovery_attribute)),
            locked=locked,
            password_expired=expired,
            password_changed_at=changed,
            fingerprint=fingerprint(entry["dn"], state),
            must_change=must_change,
            password_state=tuple(raw.get("userPassword") or ()) if self.flavour != "ad" else (),
        )

    def _policy(self, dn: str | None) -> dict:
        if not dn:
            return {}
        cached = self._policy_cache.get(dn)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        entries = self._search(
            dn, "(objectClass=*)", ["pwdMaxAge", "pwdLockoutDuration", "pwdGraceAuthNLimit"], scope=ldap3.BASE
        )
        policy = {}
        if entries:
            for key, value in entries[0]["attributes"].items():
                try:
                    policy[key] = int(_first(value) or 0)
                except ValueError:
                    continue
        self._policy_cache[dn] = (time.monotonic() + 60, policy)
        return policy

    def _filter_for(self, *spellings: str) -> str:
        values = [escape_filter_chars(s) for s in dict.fromkeys(spellings)]
        clauses = "".join(f"({attr}={value})" for value in values for attr in self.login_attributes)
        return f"(&{self.user_filter}(|{clauses}))"

    def lockout_threshold(self) -> int | None:
        """Return the policy entry's pwdMaxFailure (failed binds before a lockout), or None if it has none."""
        if self.flavour == "ad" or not self.default_policy_dn:
            return None
        entries = self._search(self.default_policy_dn, "(objectClass=*)", ["pwdMaxFailure", "pwdLockout"], ldap3.BASE)
        if not entries:
            raise DirectoryError(f"the policy entry {self.default_policy_dn} does not exist or cannot be read")
        attrs = entries[0]["attributes"]
        try:
            threshold = int(_first(attrs.get("pwdMaxFailure")) or 0)
        except ValueError:
            return None
        locks = _first(attrs.get("pwdLockout")).upper() == "TRUE"
        return threshold if locks and threshold > 0 else None

    # -- password expiry (the reminder job)

    def password_max_age(self, policy_dn: str | None = None) -> int | None:
        """Return the maximum password age in seconds, or None when passwords do not expire.

        OpenLDAP: pwdMaxAge of the policy entry (LDAP_PASSWORD_POLICY_DN by default); AD: the
        domain's maxPwdAge. Raise DirectoryError when the entry is missing or unreadable.
        """
        if self.flavour == "ad":
            dn = self.domain_dn
            entries = self._search(dn, "(objectClass=*)", ["maxPwdAge"], scope=ldap3.BASE)
            if not entries:
                raise DirectoryError(f"the domain entry {dn} does not exist or cannot be read")
            return _ad_interval(entries[0]["attributes"].get("maxPwdAge"))
        dn = policy_dn or self.default_policy_dn
        if not dn:
            raise DirectoryError("LDAP_PASSWORD_POLICY_DN is not set")
        entries = self._search(dn, "(objectClass=*)", ["pwdMaxAge"], scope=ldap3.BASE)
        if not entries:
            raise DirectoryError(f"the policy entry {dn} does not exist or cannot be read")
        try:
            return int(_first(entries[0]["attributes"].get("pwdMaxAge")) or 0) or None
        except ValueError:
            return None

    @property
    def domain_dn(self) -> str:
        """Return the DN of the AD domain the base DN lies in (its DC= components)."""
        return ",".join(f"{attr}={value}" for attr, value, _ in parse_dn(self.base_dn) if attr.lower() == "dc")

    def password_ages(self, page_size: int = 500) -> list[tuple[Account, int | None]]:
        """Return every account of LDAP_USER_FILTER with its maximum password age (None: never expires).

        One paged search, whatever the number of people; each distinct policy entry is read once.
        """
        attributes = self._account_attributes
        entries = self._paged_search(self.user_filter, attributes, page_size)
        if self.flavour == "ad":
            domain_age = self.password_max_age()
            ages = []
            for entry in entries:
                control = int(_first(entry["attributes"].get("userAccountControl")) or 0)
                # DONT_EXPIRE_PASSWORD (0x10000) and ACCOUNTDISABLE (0x2).
                ages.append(None if control & 0x10002 else domain_age)
        else:
            ages = []
            for entry in entries:
                policy_dn = _first(entry["attributes"].get("pwdPolicySubentry")) or self.default_policy_dn
                ages.append(self._policy(policy_dn).get("pwdMaxAge") or None)
        return [(self._account(entry), age) for entry, age in zip(entries, ages, strict=True)]

    def _paged_search(self, search_filter: str, attributes, page_size: int) -> list:
        def search(conn):
            found, cookie = [], None
            while True:
                conn.search(
                    self.base_dn,
                    search_filter,
                    ldap3.SUBTREE,
                    attributes=attributes,
                    paged_size=page_size,
                    paged_cookie=cookie,
                )
                result = conn.result["result"]
                if result in (51, 52, 80):
                    raise DirectoryUnavailable(conn.result["description"])
                found += [e for e in conn.response if e.get("type") == "searchResEntry"]
                if result == 4:
                    # Partial results would skip people without a word: say what to change instead.
                    raise DirectoryError(
                        f"the directory's size limit stopped the search after {len(found)} entries: let the "
                        "service account page through them all (OpenLDAP: limits ... size.prtotal=unlimited)"
                    )
                if result != 0:
                    raise DirectoryError(f"search failed: {conn.result['description']}")
                paging = (conn.result.get("controls") or {}).get(PAGED_RESULTS_OID) or {}
                cookie = (paging.get("value") or {}).get("cookie")
                if not cookie:
                    return found

        return self._run("service", search)

    def find_candidates(self, identifier: str) -> list[Account]:
        """Return the accounts a login or address names, as typed or folded (see fold_identifier).

        At most MAX_LOGIN_CANDIDATES + 1, so that a caller can tell "too many" from a few.
        """
        identifier = (identifier or "").strip()
        if not identifier or len(identifier) > MAX_IDENTIFIER_LENGTH or not identifier.isprintable():
            self._search(self.base_dn, self._filter_for("\x00pwdrst-nobody"), ["1.1"], size_limit=1)
            return []
        entries = self._search(
            self.base_dn,
            self._filter_for(identifier, fold_identifier(identifier)),
            self._account_attributes,
            size_limit=MAX_LOGIN_CANDIDATES + 1,
        )
        return sorted((self._account(e) for e in entries), key=lambda a: a.login)

    def find_account(self, identifier: str) -> Account | None:
        """Find the account a login or any of its addresses names (case-insensitively).

        Return None when nothing matches; raise AmbiguousAccount when several accounts do.
        """
        identifier = (identifier or "").strip()
        if not identifier or len(identifier) > MAX_IDENTIFIER_LENGTH or not identifier.isprintable():
            # Still one round trip, so that timing does not tell a refused input from a real one.
            self._search(self.base_dn, self._filter_for("\x00pwdrst-nobody"), ["1.1"], size_limit=1)
            return None
        entries = self._search(self.base_dn, self._filter_for(identifier), self._account_attributes, size_limit=3)
        if len(entries) > 1:
            raise AmbiguousAccount(e["dn"] for e in entries)
        return self._account(entries[0]) if entries else None

    def get_account(self, login: str) -> Account | None:
        """Return the account with exactly this login (the first login attribute), or None."""
        value = escape_filter_chars(login or "")
        entries = self._search(
            self.base_dn,
            f"(&{self.user_filter}({self.login_attributes[0]}={value}))",
            self._account_attributes,
            size_limit=2,
        )
        if len(entries) != 1:
            return None
        return self._account(entries[0])

    def search_accounts(self, query: str, limit: int = 50) -> tuple[list[Account], bool]:
        """Find accounts by login or address prefix, or any part of the display name.

        Return at most limit accounts (sorted by login) and whether there were more.
        """
        query = (query or "").strip()
        if len(query) < 2 or len(query) > MAX_IDENTIFIER_LENGTH or not query.isprintable():
            return [], False
        value = escape_filter_chars(query)
        clauses = [f"({attr}={value}*)" for attr in self.login_attributes]
        clauses += [f"({attr}=*{value}*)" for attr in dict.fromkeys(self.display_name_attributes)]
        entries = self._search(
            self.base_dn, f"(&{self.user_filter}(|{''.join(clauses)}))", self._account_attributes, size_limit=limit + 1
        )
        accounts = sorted((self._account(e) for e in entries), key=lambda a: a.login)
        return accounts[:limit], len(accounts) > limit

    def shared_addresses(self, accounts) -> dict[str, list[str]]:
        """Return, for each address of these accounts that another account also has, the logins holding it.

        One search for all of them: the seed's 3.2 and 3.4 situations, shown to the helpdesk.
        """
        addresses = {a.lower() for account in accounts for a in account.addresses}
        if not addresses:
            return {}
        clauses = "".join(
            f"({attr}={escape_filter_chars(a)})" for a in sorted(addresses) for attr in self.address_attributes
        )
        entries = self._search(self.base_dn, f"(&{self.user_filter}(|{clauses}))", self._account_attributes)
        holders: dict[str, set[str]] = {}
        for entry in entries:
            other = self._account(entry)
            for address in other.addresses:
                if address.lower() in addresses:
                    holders.setdefault(address.lower(), set()).add(other.login)
        return {address: sorted(logins) for address, logins in holders.items() if len(logins) > 1}

    def groups_of(self, account: Account, group_dns) -> set[str]:
        """Return which of the given groups the account is a member of."""
        return {dn for dn in group_dns if dn and self.is_member(account, dn)}

    def is_member(self, account: Account, group_dn: str | None) -> bool:
        """Return whether the account is a member of the group."""
        if not group_dn:
            return False
        value = escape_filter_chars(account.dn)
        return bool(self._search(group_dn, f"({self.member_attribute}={value})", ["1.1"], scope=ldap3.BASE))

    def check_service(self) -> None:
        """Bind as the service account and read the base entry; raise DirectoryError if either fails."""
        if not self._search(self.base_dn, "(objectClass=*)", ["1.1"], scope=ldap3.BASE):
            raise DirectoryError(f"the base DN {self.base_dn} does not exist or the service account cannot read it")

    # -- people's passwords

    def _bind_as(self, conn, dn: str, password: bytes):
        conn.user = dn
        conn.password = password
        conn.bind(read_server_info=False, controls=[(PPOLICY_OID, False, None)])
        return conn.result

    def authenticate(self, who: "str | Account", password: str | bytes) -> Authentication:
        """Bind as the person an identifier names (or as this Account); raise a domain error if refused."""
        account = who if isinstance(who, Account) else self.find_account(who)
        password = _as_bytes(password)
        if account is None or not password:
            self.authenticate_nobody(password)
        result = self._run("user", lambda conn: self._bind_as(conn, account.dn, password))
        return self._bind_outcome(account, result)

    def authenticate_nobody(self, password: str | bytes) -> None:
        """Bind as nobody and raise InvalidCredentials: an unknown login costs what a wrong password does."""
        password = _as_bytes(password) or b"x"
        self._run("user", lambda conn: self._bind_as(conn, f"cn=pwdrst-nobody,{self.base_dn}", password))
        raise InvalidCredentials()

    def _bind_outcome(self, account: Account, result: dict) -> Authentication:
        if self.flavour == "ad":
            return self._ad_bind_outcome(account, result)
        policy = _policy_of(result)
        if result["result"] == 0:
            if policy.error == 2 or account.must_change:  # changeAfterReset, or pwdReset set
                raise PasswordExpired(account, 0, bound=True, must_change=True)
            if policy.grace_remaining is not None or policy.error == 0:
                raise PasswordExpired(account, policy.grace_remaining or 0, bound=True)
            return Authentication(account, policy.time_before_expiration)
        if result["result"] in (51, 52, 80):
            raise DirectoryUnavailable(result["description"])
        if policy.error == 1:
            raise AccountLocked()
        if policy.error == 0:
            raise PasswordExpired(account, 0, bound=False)
        raise InvalidCredentials()

    def _ad_bind_outcome(self, account: Account, result: dict) -> Authentication:
        if result["result"] == 0:
            return Authentication(account)
        message = result.get("message") or ""
        if "data 775" in message:
            raise AccountLocked()
        if "data 773" in message:
            raise PasswordExpired(account, 0, bound=False, must_change=True)
        if "data 532" in message:
            raise PasswordExpired(account, 0, bound=False)
        raise InvalidCredentials()

    def change_password(self, account: Account, current: str | bytes, new: str | bytes) -> bool:
        """Change the password as the person; return True if the service account had to write it.

        The directory's own policy applies. An expired password with no grace login left cannot
        bind, but the server's passwordExpired answer proves it right: the service account then
        writes the new one, through the same policy.
        """
        current, new = _as_bytes(current), _as_bytes(new)
        if self.flavour == "ad":
            self._ad_modify(
                account,
                [(ldap3.MODIFY_DELETE, [_ad_password(current)]), (ldap3.MODIFY_ADD, [_ad_password(new)])],
                "user",
            )
            return False

        def change(conn):
            outcome = self._bind_outcome(account, self._bind_as(conn, account.dn, current))
            return outcome, self._password_modify(conn, None, current, new)

        try:
            self._run("user", change)
        except PasswordExpired as expired:
            if expired.bound:
                # A grace login: the bind succeeded, so the person may change it themselves.
                self._run("user", lambda conn: self._password_modify(conn, None, current, new))
                return False
            self.reset_password(account, new, unlock=False)
            return True
        return False

    def reset_password(self, account: Account, new: str | bytes, unlock: bool = True, as_read: bool = False) -> None:
        """Set a new password as the service account (quality checks still apply: write, not manage).

        With as_read, the write happens only if the stored password is still the one `account` was
        read with (RFC 4528 assertion on a replace; slapd takes no assertion on Password Modify),
        so a link used twice at the same moment writes once. Raise AccountChanged otherwise.
        """
        new = _as_bytes(new)
        if self.flavour == "ad":
            self._ad_modify(account, [(ldap3.MODIFY_REPLACE, [_ad_password(new)])], "service")
            return
        if not unlock and account.locked:
            raise PasswordRejected("locked")
        if as_read:
            self._run("service", lambda conn: self._replace_if_unchanged(conn, account, new))
        else:
            self._run("service", lambda conn: self._password_modify(conn, account.dn, None, new))

    def _replace_if_unchanged(self, conn, account: Account, new: bytes) -> None:
        if account.password_state:
            clauses = "".join(f"(userPassword={escape_filter_chars(v)})" for v in account.password_state)
            assertion = f"(&{clauses})"
        else:
            assertion = "(!(userPassword=*))"
        compiled = compile_filter(parse_filter(assertion, None, False, True, None, False).elements[0])
        controls = [(ASSERTION_OID, True, asn1_encode(compiled)), (PPOLICY_OID, False, None)]
        conn.modify(account.dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [new])]}, controls=controls)
        result = conn.result
        if result["result"] == 0:
            return
        if result["result"] == 122:  # assertionFailed
            raise AccountChanged("the password changed since the account was read")
        if result["result"] in (51, 52, 80):
            raise DirectoryUnavailable(result["description"])
        policy = _policy_of(result)
        if policy.error is not None:
            raise PasswordRejected(PPOLICY_ERRORS.get(policy.error, "rejected"))
        raise PasswordRejected("rejected")

    def _password_modify(self, conn, user_dn, old: bytes | None, new: bytes) -> None:
        # RFC 3062 Password Modify, with the policy control so that refusals come with a reason.
        conn.extend.standard.modify_password(user_dn, old, new, controls=[(PPOLICY_OID, False, None)])
        result = conn.result
        if result["result"] == 0:
            return
        if result["result"] in (51, 52, 80):
            raise DirectoryUnavailable(result["description"])
        policy = _policy_of(result)
        if policy.error is not None:
            raise PasswordRejected(PPOLICY_ERRORS.get(policy.error, "rejected"))
        if result["result"] == 49:
            raise PasswordRejected("wrong_current")
        if result["result"] == 50:
            raise PasswordRejected("not_allowed")
        if result["result"] == 53 and "old password" in (result.get("message") or "").lower():
            raise PasswordRejected("wrong_current")
        raise PasswordRejected("rejected")

    def _ad_modify(self, account: Account, changes, kind: str) -> None:
        def modify(conn):
            conn.modify(account.dn, {"unicodePwd": changes})
            if conn.result["result"] == 0:
                return
            message = conn.result.get("message") or ""
            if conn.result["result"] == 19 or "0000052D" in message:
                raise PasswordRejected("insufficient_quality")
            if conn.result["result"] == 49 or "00000056" in message:
                raise PasswordRejected("wrong_current")
            raise PasswordRejected("rejected")

        self._run(kind, modify)

    # -- recovery addresses

    def set_recovery_addresses(self, account: Account, addresses) -> None:
        """Replace the account's recovery addresses (an empty list removes them all)."""

        def modify(conn):
            conn.modify(account.dn, {self.recovery_attribute: [(ldap3.MODIFY_REPLACE, list(addresses))]})
            if conn.result["result"] != 0:
                if conn.result["result"] in (51, 52, 80):
                    raise DirectoryUnavailable(conn.result["description"])
                raise DirectoryError(f"could not store the recovery address: {conn.result['description']}")

        self._run("service", modify)


# The public verbs of Directory, which name the operations in the metrics.
_VERBS = frozenset(name for name in dir(Directory) if not name.startswith("_"))


def _verb() -> str:
    # The nearest public Directory method up the stack (find_account, reset_password, ...): every
    # operation goes through _run, so it is measured in one place, named by what it was for.
    frame = sys._getframe(2)
    for _ in range(8):
        if frame is None:
            break
        if frame.f_code.co_name in _VERBS and isinstance(frame.f_locals.get("self"), Directory):
            return frame.f_code.co_name
        frame = frame.f_back
    return "other"


def _outcome_of(exc: DirectoryError) -> str:
    if isinstance(exc, PasswordRejected):
        return "rejected"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def _close(conn) -> None:
    try:
        conn.unbind()
    except Exception:  # noqa: BLE001, S110 - closing a broken socket may fail in many ways; it is gone either way
        pass
    # ldap3 keeps the socket of a failed connect() without closing it.
    if getattr(conn, "socket", None) is not None:
        try:
            conn.socket.close()
        except OSError:
            pass


def _is_locked(locked_time: str, policy: dict) -> bool:
    if not locked_time:
        return False
    if locked_time.startswith("000001010000"):
        return True  # locked by an administrator, until unlocked
    duration = policy.get("pwdLockoutDuration", 0)
    if not duration:
        return True
    since = _parse_time(locked_time)
    return since is None or since + timedelta(seconds=duration) > datetime.now(UTC)


def _is_expired(changed: datetime | None, policy: dict) -> bool:
    max_age = policy.get("pwdMaxAge", 0)
    if not max_age or changed is None:
        return False
    return changed + timedelta(seconds=max_age) < datetime.now(UTC)


def _ad_interval(value) -> int | None:
    """Return an AD interval (maxPwdAge: negative 100-ns units) in seconds; None for 0 or "never"."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, timedelta):
        seconds = abs(value.total_seconds())
    else:
        try:
            seconds = abs(int(str(value))) / 10_000_000
        except ValueError:
            return None
    # "Never" is the most negative 64-bit number; ldap3 shows it as timedelta.max or min.
    if not seconds or seconds > 100 * 365 * 86400:
        return None
    return int(seconds)


def fingerprint(dn: str, state: str) -> str:
    """Return a short digest of an account's password state (not the hash itself)."""
    digest = hmac.new(b"pwdrst password state", f"{dn}\n{state}".encode(), hashlib.sha256).digest()
    # 48 bits: enough to notice a change (the token's signature, not this, stops forgery).
    return base64.urlsafe_b64encode(digest[:6]).decode("ascii")


def init_app(app) -> None:
    """Attach a Directory built from the app's configuration."""
    app.extensions["pwdrst.directory"] = Directory(app.config)


directory: Directory = LocalProxy(lambda: current_app.extensions["pwdrst.directory"])  # type: ignore[assignment]
