"""What differs between OpenLDAP and Active Directory, behind one small interface.

Each flavour says which attributes to read, builds an Account from an entry, reads a bind's
outcome, changes a person's own password, and resets one as the service account (unlocking it).
"""

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import ldap3
from ldap3.operation.search import compile_filter, parse_filter
from ldap3.utils.asn1 import encode as asn1_encode
from ldap3.utils.conv import escape_filter_chars

from pwdrst.directory.accounts import (
    Account,
    Authentication,
    every,
    fingerprint,
    first,
    from_filetime,
    integer,
    interval_seconds,
    parse_time,
)
from pwdrst.directory.errors import (
    AccountChanged,
    AccountLocked,
    DirectoryError,
    InvalidCredentials,
    PasswordExpired,
    PasswordRejected,
    raise_if_unavailable,
)
from pwdrst.directory.ppolicy import PPOLICY_OID, policy_of

ASSERTION_OID = "1.3.6.1.1.12"  # RFC 4528
# LDAP_SERVER_POLICY_HINTS_OID: ask AD to enforce history on a reset. Its value is
# SEQUENCE { Flags INTEGER } with Flags = 1. Samba ignores it (docs/samba-facts.md).
POLICY_HINTS_OID = "1.2.840.113556.1.4.2239"
POLICY_HINTS_VALUE = b"\x30\x03\x02\x01\x01"

# userAccountControl and msDS-User-Account-Control-Computed bits ([MS-ADTS] 2.2.16).
UF_ACCOUNTDISABLE = 0x2
UF_LOCKOUT = 0x10
UF_PASSWORD_EXPIRED = 0x800000


class Flavour:
    """The interface: one subclass per kind of directory."""

    # Whether a reset by link can be made conditional on the password read (so a link used twice
    # at the same moment writes once) in the write itself; if not, the caller claims the link first.
    writes_once = True

    def __init__(self, directory):
        self.directory = directory
        self.pool = directory.pool

    def account_attributes(self) -> set[str]:
        """Return the attributes the flavour reads besides names and addresses."""
        raise NotImplementedError

    def account(self, entry, base: dict) -> Account:
        """Build an Account from an entry; base holds the fields common to both flavours."""
        raise NotImplementedError

    def bind_outcome(self, account: Account, result: dict) -> Authentication:
        """Turn a bind result into an Authentication or a domain error."""
        raise NotImplementedError

    def change_password(self, account: Account, current: bytes, new: bytes) -> bool:
        """Change the password as the person; return True if the service account had to send it."""
        raise NotImplementedError

    def reset_password(self, account: Account, new: bytes, unlock: bool, as_read: bool) -> bool:
        """Set a password as the service account; return True if the account stays locked."""
        raise NotImplementedError

    def domain_rules(self):
        """Return the directory's own password rules where pwdrst can read them (AD), else None."""
        return None


def bind_as(conn, dn: str, password: bytes, controls=None) -> dict:
    """Bind an open connection as dn; return the result."""
    conn.user = dn
    conn.password = password
    conn.bind(read_server_info=False, controls=controls)
    return conn.result


# ---------------------------------------------------------------- OpenLDAP


class OpenLDAP(Flavour):
    """OpenLDAP with ppolicy: Password Modify, the policy control, pwdAccountLockedTime."""

    def __init__(self, directory):
        super().__init__(directory)
        self._policy_cache: dict[str, tuple[float, dict]] = {}

    def account_attributes(self) -> set[str]:
        attrs = {"userPassword", "pwdChangedTime", "pwdAccountLockedTime", "pwdPolicySubentry", "pwdGraceUseTime"}
        return attrs | {"pwdReset", "entryCSN"}

    def account(self, entry, base: dict) -> Account:
        attrs = entry["attributes"]
        raw = entry.get("raw_attributes") or {}
        changed = parse_time(attrs.get("pwdChangedTime"))
        policy = self._policy(first(attrs.get("pwdPolicySubentry")) or self.directory.default_policy_dn)
        # The stored hash carries a fresh salt at every change, so it moves even when two changes
        # fall in the same second of pwdChangedTime.
        state = "|".join(sorted(every(attrs.get("userPassword")))) + "|" + first(attrs.get("pwdChangedTime"))
        return Account(
            **base,
            locked=_is_locked(first(attrs.get("pwdAccountLockedTime")), policy),
            password_expired=_is_expired(changed, policy) or bool(every(attrs.get("pwdGraceUseTime"))),
            password_changed_at=changed,
            fingerprint=fingerprint(entry["dn"], state),
            must_change=first(attrs.get("pwdReset")).upper() == "TRUE",
            password_state=tuple(raw.get("userPassword") or ()),
            revision=first(attrs.get("entryCSN")),
        )

    def _policy(self, dn: str | None) -> dict:
        if not dn:
            return {}
        cached = self._policy_cache.get(dn)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        entries = self.directory._search(
            dn, "(objectClass=*)", ["pwdMaxAge", "pwdLockoutDuration", "pwdGraceAuthNLimit"], scope=ldap3.BASE
        )
        policy = {}
        if entries:
            for key, value in entries[0]["attributes"].items():
                try:
                    policy[key] = int(first(value) or 0)
                except ValueError:
                    continue
        self._policy_cache[dn] = (time.monotonic() + 60, policy)
        return policy

    def bind_outcome(self, account: Account, result: dict) -> Authentication:
        policy = policy_of(result)
        if result["result"] == 0:
            if policy.error == 2 or account.must_change:  # changeAfterReset, or pwdReset set
                raise PasswordExpired(account, 0, bound=True, must_change=True)
            if policy.grace_remaining is not None or policy.error == 0:
                raise PasswordExpired(account, policy.grace_remaining or 0, bound=True)
            return Authentication(account, policy.time_before_expiration)
        raise_if_unavailable(result)
        if policy.error == 1:
            raise AccountLocked()
        if policy.error == 0:
            raise PasswordExpired(account, 0, bound=False)
        raise InvalidCredentials()

    def bind_controls(self):
        return [(PPOLICY_OID, False, None)]

    def change_password(self, account: Account, current: bytes, new: bytes) -> bool:
        def change(conn):
            result = bind_as(conn, account.dn, current, self.bind_controls())
            outcome = self.bind_outcome(account, result)
            return outcome, self._password_modify(conn, None, current, new)

        try:
            self.pool.run("user", change)
        except PasswordExpired as expired:
            if expired.bound:
                # A grace login: the bind succeeded, so the person may change it themselves.
                self.pool.run("user", lambda conn: self._password_modify(conn, None, current, new))
                return False
            self.reset_password(account, new, unlock=False, as_read=False)
            return True
        return False

    def reset_password(self, account: Account, new: bytes, unlock: bool, as_read: bool) -> bool:
        # ppolicy unlocks on any password change by the service account (pwdAccountLockedTime goes).
        if not unlock and account.locked:
            raise PasswordRejected("locked")
        if as_read:
            self.pool.run("service", lambda conn: self._replace_if_unchanged(conn, account, new))
        else:
            self.pool.run("service", lambda conn: self._password_modify(conn, account.dn, None, new))
        return False

    def _replace_if_unchanged(self, conn, account: Account, new: bytes) -> None:
        # The stored password values when the account was read with them; otherwise (the account a
        # link's session kept, which never holds them) the entry's revision: nothing changed at all.
        if account.password_state:
            clauses = "".join(f"(userPassword={escape_filter_chars(v)})" for v in account.password_state)
            assertion = f"(&{clauses})"
        elif account.revision:
            assertion = f"(entryCSN={escape_filter_chars(account.revision)})"
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
        raise_if_unavailable(result)
        raise PasswordRejected(policy_of(result).reason or "rejected")

    def _password_modify(self, conn, user_dn, old: bytes | None, new: bytes) -> None:
        # RFC 3062 Password Modify, with the policy control so that refusals come with a reason.
        conn.extend.standard.modify_password(user_dn, old, new, controls=[(PPOLICY_OID, False, None)])
        result = conn.result
        if result["result"] == 0:
            return
        raise_if_unavailable(result)
        reason = policy_of(result).reason
        if reason:
            raise PasswordRejected(reason)
        if result["result"] == 49:
            raise PasswordRejected("wrong_current")
        if result["result"] == 50:
            raise PasswordRejected("not_allowed")
        if result["result"] == 53 and "old password" in (result.get("message") or "").lower():
            raise PasswordRejected("wrong_current")
        raise PasswordRejected("rejected")


def _is_locked(locked_time: str, policy: dict) -> bool:
    if not locked_time:
        return False
    if locked_time.startswith("000001010000"):
        return True  # locked by an administrator, until unlocked
    duration = policy.get("pwdLockoutDuration", 0)
    if not duration:
        return True
    since = parse_time(locked_time)
    return since is None or since + timedelta(seconds=duration) > datetime.now(UTC)


def _is_expired(changed: datetime | None, policy: dict) -> bool:
    max_age = policy.get("pwdMaxAge", 0)
    if not max_age or changed is None:
        return False
    return changed + timedelta(seconds=max_age) < datetime.now(UTC)


# ---------------------------------------------------------------- Active Directory


@dataclass(frozen=True)
class DomainRules:
    """An AD domain's password settings (durations in seconds; None = never)."""

    min_length: int = 0
    complexity: bool = False
    history_length: int = 0
    min_age: int = 0
    max_age: int | None = None
    lockout_duration: int | None = None

    def details(self) -> dict:
        """Return the settings as PasswordRejected details."""
        return {
            "min_length": self.min_length,
            "complexity": self.complexity,
            "history_length": self.history_length,
            "min_age": self.min_age,
        }


def _ad_password(password: bytes) -> bytes:
    # Active Directory takes the password as a quoted UTF-16LE string in unicodePwd.
    return ('"' + password.decode("utf-8") + '"').encode("utf-16-le")


class ActiveDirectory(Flavour):
    """Active Directory (and Samba AD): unicodePwd, lockoutTime, pwdLastSet, the domain's settings."""

    # Neither RFC 4528 assertions nor any other condition on a write: links are claimed first.
    writes_once = False

    def __init__(self, directory):
        super().__init__(directory)
        self._rules: tuple[float, DomainRules] | None = None
        self._rules_lock = threading.Lock()
        # The domain object holds the password settings: the DC= part of the base DN.
        parts = [p for p in directory.base_dn.split(",") if p.strip().upper().startswith("DC=")]
        self.domain_dn = ",".join(p.strip() for p in parts) or directory.base_dn

    def account_attributes(self) -> set[str]:
        # The computed attribute is constructed: returned only when asked for by name.
        return {"pwdLastSet", "lockoutTime", "userAccountControl", "msDS-User-Account-Control-Computed"}

    def account(self, entry, base: dict) -> Account:
        attrs = entry["attributes"]
        computed = integer(attrs.get("msDS-User-Account-Control-Computed"))
        control = integer(attrs.get("userAccountControl"))
        last_set = first(attrs.get("pwdLastSet"))
        must_change = last_set == "0"
        return Account(
            **base,
            locked=bool(computed & UF_LOCKOUT) or self._lockout_active(attrs.get("lockoutTime")),
            password_expired=bool(computed & UF_PASSWORD_EXPIRED) and not must_change,
            password_changed_at=from_filetime(last_set),
            fingerprint=fingerprint(entry["dn"], last_set),
            must_change=must_change,
            disabled=bool(control & UF_ACCOUNTDISABLE),
        )

    def _lockout_active(self, value) -> bool:
        since = from_filetime(value)
        if since is None:
            return False
        try:
            duration = self.domain_rules().lockout_duration
        except DirectoryError:
            return True
        return duration is None or since + timedelta(seconds=duration) > datetime.now(UTC)

    def domain_rules(self) -> DomainRules:
        with self._rules_lock:
            if self._rules and self._rules[0] > time.monotonic():
                return self._rules[1]
        names = ["minPwdLength", "pwdProperties", "pwdHistoryLength", "minPwdAge", "maxPwdAge", "lockoutDuration"]
        entries = self.directory._search(self.domain_dn, "(objectClass=*)", names, scope=ldap3.BASE)
        attrs = entries[0]["attributes"] if entries else {}
        max_age = interval_seconds(attrs.get("maxPwdAge"))
        rules = DomainRules(
            min_length=integer(attrs.get("minPwdLength")),
            complexity=bool(integer(attrs.get("pwdProperties")) & 1),  # DOMAIN_PASSWORD_COMPLEX
            history_length=integer(attrs.get("pwdHistoryLength")),
            min_age=interval_seconds(attrs.get("minPwdAge")) or 0,
            max_age=max_age or None,
            lockout_duration=interval_seconds(attrs.get("lockoutDuration")),
        )
        with self._rules_lock:
            self._rules = (time.monotonic() + 60, rules)
        return rules

    def bind_controls(self):
        return None

    def bind_outcome(self, account: Account, result: dict) -> Authentication:
        if result["result"] == 0:
            return Authentication(account)
        raise_if_unavailable(result)
        message = result.get("message") or ""
        if "data 775" in message:
            raise AccountLocked()
        if "data 773" in message:
            raise PasswordExpired(account, 0, bound=False, must_change=True)
        if "data 532" in message:
            raise PasswordExpired(account, 0, bound=False)
        raise InvalidCredentials()

    def change_password(self, account: Account, current: bytes, new: bytes) -> bool:
        # Bound as the person on a connection of its own, closed after: a pooled connection may
        # be bound as someone else, and AD would make the change as that someone.
        changes = {
            "unicodePwd": [(ldap3.MODIFY_DELETE, [_ad_password(current)]), (ldap3.MODIFY_ADD, [_ad_password(new)])]
        }
        with self.pool.dedicated() as conn:
            result = bind_as(conn, account.dn, current)
            if result["result"] == 0:
                conn.modify(account.dn, changes)
                self._check_write(conn.result)
                return False
            try:
                self.bind_outcome(account, result)
            except PasswordExpired:
                pass  # 532 and 773 come only with the right password; the person cannot bind.
        # Expired or must-change: AD grants Change Password to everyone, and the delete of the old
        # value proves it, so the service account sends the same change on a connection of its own.
        with self.pool.dedicated(bind_as_service=True) as conn:
            conn.modify(account.dn, changes)
            self._check_write(conn.result)
        return True

    def reset_password(self, account: Account, new: bytes, unlock: bool, as_read: bool) -> bool:
        if not unlock and account.locked:
            raise PasswordRejected("locked")

        def reset(conn):
            controls = [(POLICY_HINTS_OID, False, POLICY_HINTS_VALUE)]
            conn.modify(account.dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [_ad_password(new)])]}, controls=controls)
            self._check_write(conn.result)
            if not (unlock and account.locked):
                return False
            conn.modify(account.dn, {"lockoutTime": [(ldap3.MODIFY_REPLACE, ["0"])]})
            raise_if_unavailable(conn.result)
            return conn.result["result"] != 0

        return self.pool.run("service", reset)

    def _check_write(self, result: dict) -> None:
        """Raise the domain error an AD password write's result means (nothing on success)."""
        if result["result"] == 0:
            return
        raise_if_unavailable(result)
        message = result.get("message") or ""
        text = message.lower()
        if "00000056" in message:
            raise PasswordRejected("wrong_current")
        if "00000775" in message:
            raise PasswordRejected("locked")
        if result["result"] == 50:
            raise PasswordRejected("not_allowed")
        if "0000052d" not in text and result["result"] != 19:
            raise PasswordRejected("rejected")
        details = self.domain_rules().details()
        # Samba names the rule; Windows says only 0000052D, so every rule that applies is said.
        if "too young" in text:
            raise PasswordRejected("too_young", details)
        if "history" in text or "previous password" in text:
            raise PasswordRejected("in_history", details)
        if "complexity" in text:
            raise PasswordRejected("complexity", details)
        if "too short" in text:
            raise PasswordRejected("too_short", details)
        raise PasswordRejected("domain_rules", details)
