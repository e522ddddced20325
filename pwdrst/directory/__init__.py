"""The directory: every LDAP operation pwdrst performs, in domain terms.

This package is the only importer of ldap3. Views call verbs on `directory` (find_account,
authenticate, change_password, reset_password, ...) and get `Account` objects or domain errors.
Its rooms: `pool` (the servers and this process's connections), `flavours` (what differs between
OpenLDAP and Active Directory), `ppolicy` (OpenLDAP's policy control and its refusal codes),
`accounts` (the domain objects) and `errors` (what it raises).
"""

import dataclasses
import re
import sys
import unicodedata
from datetime import timedelta
from urllib.parse import urlsplit

import ldap3
from flask import current_app
from ldap3.core import exceptions as ldap_exc
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn
from werkzeug.local import LocalProxy

from pwdrst.directory.accounts import Account, Authentication, every, fingerprint, first
from pwdrst.directory.errors import (
    AccountChanged,
    AccountLocked,
    AmbiguousAccount,
    DirectoryError,
    DirectoryUnavailable,
    InvalidCredentials,
    PasswordExpired,
    PasswordRejected,
    raise_if_unavailable,
)
from pwdrst.directory.flavours import ActiveDirectory, DomainRules, OpenLDAP, bind_as
from pwdrst.directory.pool import ConnectionPool
from pwdrst.directory.ppolicy import PPOLICY_ERRORS, PPOLICY_OID, PolicyResponse, decode_policy_control

__all__ = [
    "MAX_IDENTIFIER_LENGTH",
    "MAX_LOGIN_CANDIDATES",
    "PPOLICY_ERRORS",
    "PPOLICY_OID",
    "Account",
    "AccountChanged",
    "AccountLocked",
    "AmbiguousAccount",
    "Authentication",
    "Directory",
    "DirectoryError",
    "DirectoryUnavailable",
    "DomainRules",
    "InvalidCredentials",
    "PasswordExpired",
    "PasswordRejected",
    "PolicyResponse",
    "decode_policy_control",
    "directory",
    "fingerprint",
    "fold_identifier",
    "init_app",
    "is_valid_dn",
    "parse_servers",
]

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"  # RFC 2696

# Longest identifier worth a directory round trip (RFC 5321 limits an address to 254 octets).
MAX_IDENTIFIER_LENGTH = 256

# Most accounts a login tries one password on when an address is shared (the seed's 3.4); beyond
# that the address says nothing about the person, and the login is refused as invalid.
MAX_LOGIN_CANDIDATES = 3

FLAVOURS = {"openldap": OpenLDAP, "ad": ActiveDirectory}


def fold_identifier(identifier: str) -> str:
    """Return the spelling of a login or address that counts as the same: NFKC, case folded.

    Full-width letters (NFKC) and a dotted capital I (folded to i + U+0307, whose dot goes) name the
    same account as their plain spelling; the directory matches logins and addresses without case.
    """
    folded = unicodedata.normalize("NFKC", (identifier or "").strip()).casefold()
    return unicodedata.normalize("NFKC", folded.replace("i\u0307", "i"))


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


def is_valid_dn(dn: str) -> bool:
    """Return whether dn parses as a distinguished name."""
    try:
        return bool(parse_dn(dn))
    except (ldap_exc.LDAPInvalidDnError, ValueError, TypeError):
        return False


class Directory:
    """Domain operations on one LDAP directory (a failover pool of servers)."""

    def __init__(self, config):
        self.base_dn = config["LDAP_BASE_DN"]
        self.bind_dn = config["LDAP_BIND_DN"]
        self.login_attributes = tuple(config["LDAP_LOGIN_ATTRIBUTES"])
        self.address_attributes = tuple(a for a in self.login_attributes[1:])
        self.recovery_attribute = config["LDAP_RECOVERY_ATTRIBUTE"]
        self.display_name_attributes = (config["LDAP_DISPLAY_NAME_ATTRIBUTE"], "cn")
        self.user_filter = config["LDAP_USER_FILTER"]
        self.member_attribute = config["LDAP_GROUP_MEMBER_ATTRIBUTE"]
        self.default_policy_dn = config["LDAP_PASSWORD_POLICY_DN"]
        self.timeout = float(config["LDAP_TIMEOUT"])
        self.pool = ConnectionPool(
            parse_servers(config["LDAP_URL"]),
            bind_dn=self.bind_dn,
            bind_password=_as_bytes(config["LDAP_BIND_PASSWORD"] or ""),
            timeout=self.timeout,
            start_tls=bool(config["LDAP_START_TLS"]),
            ca_file=config["LDAP_CA_FILE"],
        )
        self.flavour_name = config["LDAP_FLAVOUR"]
        self.flavour = FLAVOURS[self.flavour_name](self)
        self._observer = None

    @property
    def observer(self):
        """The callable told (verb, outcome, seconds) after every directory operation (the metrics)."""
        return self._observer

    @observer.setter
    def observer(self, observe) -> None:
        self._observer = observe
        if observe is None:
            self.pool.observer = None
        else:
            self.pool.observer = lambda failure, seconds: observe(_verb(), _outcome_of(failure), seconds)

    @property
    def writes_once(self) -> bool:
        """Whether a reset by link writes at most once by itself (else the caller claims the link first)."""
        return self.flavour.writes_once

    def close(self) -> None:
        """Close every connection of every thread (at shutdown); later operations reconnect."""
        self.pool.close()

    def after_fork(self) -> None:
        """In a forked child process: open connections of its own, leaving the parent's untouched."""
        self.pool.after_fork()

    def _search(self, base: str, search_filter: str, attributes, scope=ldap3.SUBTREE, size_limit=0):
        def search(conn):
            conn.search(base, search_filter, scope, attributes=attributes, size_limit=size_limit)
            result = conn.result
            if result["result"] in (0, 4):  # success, sizeLimitExceeded
                return [e for e in conn.response if e.get("type") == "searchResEntry"]
            if result["result"] == 32:  # noSuchObject
                return []
            raise_if_unavailable(result)
            raise DirectoryError(f"search failed: {result['description']}")

        return self.pool.run("service", search)

    # -- reading accounts

    @property
    def _account_attributes(self) -> list[str]:
        attrs = {"givenName", "sn", "cn", *self.login_attributes, *self.display_name_attributes}
        attrs.add(self.recovery_attribute)
        return sorted(attrs | self.flavour.account_attributes())

    def _account(self, entry) -> Account:
        attrs = entry["attributes"]
        display = next((first(attrs.get(a)) for a in self.display_name_attributes if first(attrs.get(a))), "")
        addresses: list[str] = []
        for name in self.address_attributes:
            for value in every(attrs.get(name)):
                # AD's proxyAddresses carry a type: "SMTP:" before the primary address, "smtp:" before aliases.
                address = value.split(":", 1)[1] if value[:5].lower() == "smtp:" else value
                if "@" in address and ":" not in address and address not in addresses:
                    addresses.append(address)
        base = {
            "dn": entry["dn"],
            "login": first(attrs.get(self.login_attributes[0])),
            "display_name": display,
            "given_name": first(attrs.get("givenName")),
            "surname": first(attrs.get("sn")),
            "addresses": tuple(addresses),
            "recovery_addresses": every(attrs.get(self.recovery_attribute)),
        }
        account = self.flavour.account(entry, base)
        # A reset link must die when the recovery addresses change too: it was mailed to the old ones.
        recovery = "\n".join(sorted(a.lower() for a in account.recovery_addresses))
        return dataclasses.replace(
            account,
            password_fingerprint=account.fingerprint,
            fingerprint=fingerprint(account.dn, account.fingerprint + "\n" + recovery),
        )

    def _clauses(self, value: str, pattern: str = "{}") -> str:
        """Return one (attr=value) clause per login attribute; value is escaped here."""
        clauses = []
        for attr in self.login_attributes:
            escaped = escape_filter_chars(value)
            clauses.append(f"({attr}={pattern.format(escaped)})")
            if attr.lower() == "proxyaddresses" and ("@" in value or pattern != "{}"):
                # Matches "SMTP:" values too (case-insensitive); the bare address matches nothing.
                clauses.append(f"({attr}={pattern.format(escape_filter_chars('smtp:' + value))})")
        return "".join(clauses)

    def _filter_for(self, *spellings: str) -> str:
        clauses = "".join(self._clauses(spelling) for spelling in dict.fromkeys(spellings))
        return f"(&{self.user_filter}(|{clauses}))"

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

    # -- password expiry (the reminder job)

    def password_max_age(self, policy_dn: str | None = None) -> int | None:
        """Return the maximum password age in seconds, or None when passwords do not expire.

        OpenLDAP: pwdMaxAge of the policy entry (LDAP_PASSWORD_POLICY_DN by default); AD: the
        domain's maxPwdAge. Raise DirectoryError when the entry is missing or unreadable.
        """
        if self.flavour_name == "ad":
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
            return int(first(entries[0]["attributes"].get("pwdMaxAge")) or 0) or None
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
        entries = self._paged_search(self.user_filter, self._account_attributes, page_size)
        ages = []
        if self.flavour_name == "ad":
            domain_age = self.password_max_age()
            for entry in entries:
                control = int(first(entry["attributes"].get("userAccountControl")) or 0)
                # DONT_EXPIRE_PASSWORD (0x10000) and ACCOUNTDISABLE (0x2).
                ages.append(None if control & 0x10002 else domain_age)
        else:
            for entry in entries:
                policy_dn = first(entry["attributes"].get("pwdPolicySubentry")) or self.default_policy_dn
                ages.append(self.flavour._policy(policy_dn).get("pwdMaxAge") or None)
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
                result = conn.result
                raise_if_unavailable(result)
                found += [e for e in conn.response if e.get("type") == "searchResEntry"]
                if result["result"] == 4:
                    # Partial results would skip people without a word: say what to change instead.
                    raise DirectoryError(
                        f"the directory's size limit stopped the search after {len(found)} entries: let the "
                        "service account page through them all (OpenLDAP: limits ... size.prtotal=unlimited)"
                    )
                if result["result"] != 0:
                    raise DirectoryError(f"search failed: {result['description']}")
                paging = (result.get("controls") or {}).get(PAGED_RESULTS_OID) or {}
                cookie = (paging.get("value") or {}).get("cookie")
                if not cookie:
                    return found

        return self.pool.run("service", search)

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
        clauses = [self._clauses(query, "{}*")]
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
        clauses = ""
        for address in sorted(addresses):
            for attr in self.address_attributes:
                value = ("smtp:" + address) if attr.lower() == "proxyaddresses" else address
                clauses += f"({attr}={escape_filter_chars(value)})"
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

    def lockout_threshold(self) -> int | None:
        """Return the policy entry's pwdMaxFailure (failed binds before a lockout), or None if it has none."""
        if self.flavour_name == "ad" or not self.default_policy_dn:
            return None
        entries = self._search(self.default_policy_dn, "(objectClass=*)", ["pwdMaxFailure", "pwdLockout"], ldap3.BASE)
        if not entries:
            raise DirectoryError(f"the policy entry {self.default_policy_dn} does not exist or cannot be read")
        attrs = entries[0]["attributes"]
        try:
            threshold = int(first(attrs.get("pwdMaxFailure")) or 0)
        except ValueError:
            return None
        locks = first(attrs.get("pwdLockout")).upper() == "TRUE"
        return threshold if locks and threshold > 0 else None

    def domain_rules(self) -> DomainRules | None:
        """Return the directory's own password rules where it has readable ones (AD), else None."""
        return self.flavour.domain_rules()

    # -- people's passwords

    def authenticate(self, who: "str | Account", password: str | bytes) -> Authentication:
        """Bind as the person an identifier names (or as this Account); raise a domain error if refused."""
        account = who if isinstance(who, Account) else self.find_account(who)
        password = _as_bytes(password)
        if account is None or not password:
            self.authenticate_nobody(password)
        controls = self.flavour.bind_controls()
        result = self.pool.run("user", lambda conn: bind_as(conn, account.dn, password, controls))
        return self.flavour.bind_outcome(account, result)

    def authenticate_nobody(self, password: str | bytes) -> None:
        """Bind as nobody and raise InvalidCredentials: an unknown login costs what a wrong password does."""
        password = _as_bytes(password) or b"x"
        nobody, controls = f"cn=pwdrst-nobody,{self.base_dn}", self.flavour.bind_controls()
        self.pool.run("user", lambda conn: bind_as(conn, nobody, password, controls))
        raise InvalidCredentials()

    def verify_password(self, account: Account, password: str | bytes) -> None:
        """Check the person's current password by a bind as them; raise a domain error if it is refused.

        The directory's policy counts a wrong password as it counts a failed login. An expired
        password that still binds (a grace login) is right, so it passes.
        """
        password = _as_bytes(password)
        if not password:
            raise InvalidCredentials()
        controls = self.flavour.bind_controls()
        result = self.pool.run("user", lambda conn: bind_as(conn, account.dn, password, controls))
        try:
            self.flavour.bind_outcome(account, result)
        except PasswordExpired as expired:
            if not expired.bound:
                raise

    def change_password(self, account: Account, current: str | bytes, new: str | bytes) -> bool:
        """Change the password as the person; return True if the service account had to write it.

        The directory's own policy applies. An expired password with no grace login left cannot
        bind, but the server's passwordExpired answer proves it right: the service account then
        writes the new one, through the same policy.
        """
        return self.flavour.change_password(account, _as_bytes(current), _as_bytes(new))

    def reset_password(self, account: Account, new: str | bytes, unlock: bool = True, as_read: bool = False) -> bool:
        """Set a new password as the service account (quality checks still apply: write, not manage).

        With unlock, a locked account is unlocked; return True if it could not be (it stays locked).
        With as_read, the write happens only if the stored password is still the one `account` was
        read with, where the flavour can say so in the write (OpenLDAP: an RFC 4528 assertion);
        raise AccountChanged otherwise. Where it cannot (`writes_once` is False), the caller claims
        the link before writing.
        """
        return bool(self.flavour.reset_password(account, _as_bytes(new), unlock, as_read))

    # -- recovery addresses

    def set_recovery_addresses(self, account: Account, addresses) -> None:
        """Replace the account's recovery addresses (an empty list removes them all)."""

        def modify(conn):
            conn.modify(account.dn, {self.recovery_attribute: [(ldap3.MODIFY_REPLACE, list(addresses))]})
            if conn.result["result"] != 0:
                raise_if_unavailable(conn.result)
                raise DirectoryError(f"could not store the recovery address: {conn.result['description']}")

        self.pool.run("service", modify)


# The public verbs of Directory, which name the operations in the metrics.
_VERBS = frozenset(name for name in dir(Directory) if not name.startswith("_"))


def _verb() -> str:
    # The nearest public Directory method up the stack (find_account, reset_password, ...): every
    # operation goes through the pool's runner, so it is measured in one place, named by its purpose.
    frame = sys._getframe(2)
    for _ in range(10):
        if frame is None:
            break
        if frame.f_code.co_name in _VERBS and isinstance(frame.f_locals.get("self"), Directory):
            return frame.f_code.co_name
        frame = frame.f_back
    return "other"


def _outcome_of(exc: DirectoryError | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, PasswordRejected):
        return "rejected"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


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


def init_app(app) -> None:
    """Attach a Directory built from the app's configuration."""
    app.extensions["pwdrst.directory"] = Directory(app.config)


directory: Directory = LocalProxy(lambda: current_app.extensions["pwdrst.directory"])  # type: ignore[assignment]
