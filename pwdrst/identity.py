"""Who is asking: logging in, the session that remembers it, and the roles that grant the helpdesk.

Views of every blueprint guard themselves with `login_required` and `staff_required` from here, so
that no blueprint imports another.
"""

import re
import time
import unicodedata
from dataclasses import dataclass
from functools import cached_property, wraps
from urllib.parse import unquote

from flask import abort, current_app, g, redirect, request, session, url_for

from pwdrst import audit, ratelimit, sessions
from pwdrst.directory import (
    MAX_LOGIN_CANDIDATES,
    Account,
    AccountLocked,
    Authentication,
    DirectoryError,
    InvalidCredentials,
    PasswordExpired,
    directory,
)

# Pages a person whose password has expired may still reach (the "must change" path).
MUST_CHANGE_ALLOWED = {"account.change_password", "account.logout", "api.strength", "static", "main.set_language"}


@dataclass(frozen=True)
class Person:
    """The logged-in person: their account as the directory has it now, and their helpdesk roles.

    The roles are read from the directory when first asked for in a request (the helpdesk's pages,
    the menu of every page), not for a request that never uses them (a form posted and redirected):
    two group searches of the six a password change made. Whatever decides on a role reads it live.
    """

    account: Account

    @cached_property
    def roles(self) -> frozenset[str]:
        """Return the person's roles as the directory has them now; a change moves the session's id."""
        roles = frozenset(staff_roles(self.account))
        if sorted(roles) != session.get("roles"):
            session["roles"] = sorted(roles)
            sessions.renew_id()  # a role granted mid-session must not ride on an id issued before it
        return roles

    @property
    def login(self) -> str:
        """Return the person's login."""
        return self.account.login

    @property
    def staff(self) -> bool:
        """Return whether the person may use the helpdesk."""
        return "helpdesk" in self.roles


# A `next` target as it arrives: a path of printable ASCII, no longer than any page of ours needs.
SAFE_PATH = re.compile(r"/[\x21-\x7e]*")
MAX_NEXT_LENGTH = 1024


class LoginLimited(DirectoryError):
    """Too many failed logins for this client or this identifier: refused before any bind."""


# ---------------------------------------------------------------- roles


def staff_roles(account: Account) -> set[str]:
    """Return the account's helpdesk roles: "helpdesk" and/or "admin" (admins have every helpdesk right)."""
    config = current_app.config
    groups = directory.groups_of(account, [config["LDAP_HELPDESK_GROUP"], config["LDAP_ADMIN_GROUP"]])
    roles = set()
    if config["LDAP_ADMIN_GROUP"] in groups:
        roles |= {"admin", "helpdesk"}
    if config["LDAP_HELPDESK_GROUP"] in groups:
        roles.add("helpdesk")
    return roles


def is_protected(account: Account) -> bool:
    """Return whether the account is in the protected group (only admins may handle it)."""
    return directory.is_member(account, current_app.config["LDAP_PROTECTED_GROUP"])


# ---------------------------------------------------------------- logging in


def log_in(identifier: str, password: str) -> Authentication:
    """Bind as the person; each bind is counted before it is tried, so the limits hold however many arrive at once.

    A wrong password, an unknown login, a locked account and an address several accounts share all
    raise InvalidCredentials (the page must not tell them apart). For a shared address each account
    (at most MAX_LOGIN_CANDIDATES) is tried with the password: the one it opens is the person's.
    Raise LoginLimited, InvalidCredentials or PasswordExpired.
    """
    if not ratelimit.login_attempt_address():
        audit.log("login", "limited", account=None, identifier_known=False)
        raise LoginLimited()
    candidates = directory.find_candidates(identifier)
    if not candidates or len(candidates) > MAX_LOGIN_CANDIDATES:
        if not ratelimit.login_attempt(identifier):
            audit.log("login", "limited", account=None, identifier_known=False)
            raise LoginLimited()
        if candidates:
            audit.log("login", "failed", reason="ambiguous", accounts=[a.login for a in candidates])
        else:
            audit.log("login", "failed", reason="invalid_credentials")
        directory.authenticate_nobody(password)
    for account in candidates:
        if not ratelimit.login_attempt(account):
            audit.log("login", "limited", account=account.login, identifier_known=True)
            raise LoginLimited()
    proven = []
    for account in candidates:
        try:
            proven.append(directory.authenticate(account, password))
        except PasswordExpired as exc:
            # The directory says "expired" only to the right password: the person is proven.
            proven.append(exc)
        except (InvalidCredentials, AccountLocked) as exc:
            reason = "locked" if isinstance(exc, AccountLocked) else "invalid_credentials"
            audit.log("login", "failed", account=account.login, reason=reason, shared=len(candidates) > 1)
    if len(proven) > 1:
        # A data fault (one password opening several accounts of one address), never resolved by guessing.
        audit.log("login", "failed", reason="ambiguous", accounts=[outcome.account.login for outcome in proven])
        raise InvalidCredentials()
    if not proven:
        raise InvalidCredentials()
    [outcome] = proven
    ratelimit.login_succeeded(outcome.account)
    if isinstance(outcome, PasswordExpired):
        audit.log(
            "login", "ok", account=outcome.account.login, must_change=True, grace_remaining=outcome.grace_remaining
        )
        start_session(outcome.account, must_change=True)
        raise outcome
    audit.log("login", "ok", account=outcome.account.login)
    start_session(outcome.account)
    return outcome


def start_session(account: Account, must_change: bool = False) -> None:
    """Begin a fresh session under a new id (a new CSRF token, nothing carried over) for the account."""
    session.clear()
    sessions.renew_id()
    now = time.time()
    session.permanent = True
    session["login"] = account.login
    session["started"] = session["seen"] = now
    session["generation"] = sessions.generation(account.login)
    session["fingerprint"] = account.password_fingerprint
    session["roles"] = sorted(staff_roles(account))
    if must_change:
        session["must_change"] = True


def end_session(reason: str = "logout") -> None:
    """Forget who is logged in: the session is deleted from the store and its id never loads again."""
    if session.get("login"):
        audit.log("logout" if reason == "logout" else "session_ended", "ok", account=session["login"], reason=reason)
    session.clear()
    sessions.renew_id()
    g.person = None


def after_password_change(account: Account) -> None:
    """End every other session of the account; this one, if it is the account's, goes on with the new password."""
    generation = sessions.new_generation(account.login)
    if session.get("login") != account.login:
        return
    fresh = directory.get_account(account.login)
    session["generation"] = generation
    session["fingerprint"] = fresh.password_fingerprint if fresh else ""
    session.pop("must_change", None)
    sessions.renew_id()  # leaving the must-change state widens what the session may do


def _ended_because(now: float) -> str | None:
    """Return why the session may not go on, or None."""
    config = current_app.config
    started, seen = session.get("started"), session.get("seen")
    if not isinstance(started, float) or now - started > float(config["SESSION_MAX_AGE"]):
        return "max_age"
    if not isinstance(seen, float) or now - seen > float(config["SESSION_IDLE_TIMEOUT"]):
        return "idle"
    if session.get("generation") != sessions.generation(session["login"]):
        return "password_changed"
    return None


def _load_person() -> Person | None:
    """Read the logged-in person from the directory; end the session if it may not go on."""
    now = time.time()
    reason = _ended_because(now)
    account = None if reason else directory.get_account(session["login"])
    if not reason and account is None:
        reason = "account_gone"
    # A password changed outside pwdrst (another tool, the directory itself) moves the fingerprint.
    if not reason and account.password_fingerprint != session.get("fingerprint"):
        reason = "password_changed_elsewhere"
    if reason:
        end_session(reason)
        return None
    session["seen"] = now
    return Person(account)


def safe_next(target: str | None, default: str | None = None) -> str:
    """Return target if it is a path on this site, else default (the change form if none is given).

    Browsers repair what they are given (they drop tabs and newlines, read a backslash as a slash,
    and a proxy or a second redirect may decode the path again), so any spelling that could turn
    into another host or a scheme is refused, not cleaned: https://url.spec.whatwg.org/#url-parsing
    """
    fallback = default or url_for("account.change_password")
    if not target or len(target) > MAX_NEXT_LENGTH or not SAFE_PATH.fullmatch(target):
        return fallback
    spellings = [target]
    while len(spellings) <= 4 and unquote(spellings[-1]) != spellings[-1]:  # percent-encoded, maybe repeatedly
        spellings.append(unquote(spellings[-1]))
    if unquote(spellings[-1]) != spellings[-1]:
        return fallback
    for spelling in spellings:
        spelling = unicodedata.normalize("NFKC", spelling)
        path = spelling.split("?", 1)[0].split("#", 1)[0]
        if (
            not spelling.startswith("/")
            or "//" in spelling
            or "\\" in spelling
            or any(unicodedata.category(c).startswith("C") for c in spelling)
            or {".", ".."} & set(path.split("/"))
        ):
            return fallback
    return request.script_root + target


def reauthenticate(account: Account, password: str) -> None:
    """Ask the directory for the logged-in person's password again, before a sensitive change.

    A wrong password counts as a failed login, against the same limits. Raise LoginLimited,
    InvalidCredentials, AccountLocked or PasswordExpired; nothing else happens then.
    """
    # Counted before the bind, in one atomic step, against the account's login budget.
    if not ratelimit.login_attempt(account):
        audit.log("reauthentication", "limited", account=account.login)
        raise LoginLimited()
    try:
        directory.verify_password(account, password)
    except InvalidCredentials:
        audit.log("reauthentication", "failed", account=account.login, reason="invalid_credentials")
        raise
    except (AccountLocked, PasswordExpired) as exc:
        reason = "locked" if isinstance(exc, AccountLocked) else "expired"
        audit.log("reauthentication", "failed", account=account.login, reason=reason)
        raise
    ratelimit.login_succeeded(account)
    audit.log("reauthentication", "ok", account=account.login)


# ---------------------------------------------------------------- guards


def login_required(view):
    """Send a visitor without a session to the login page, then back."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if g.person is None:
            return redirect(url_for("account.login", next=request.path))
        return view(*args, **kwargs)

    return wrapper


def staff_required(view):
    """Let only helpdesk and admin group members in; others get a 403 page (and an audit line)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if g.person is None:
            if request.method == "GET":
                return redirect(url_for("account.login", next=request.path))
            abort(403)
        if not g.person.staff:
            audit.log("helpdesk_refused", "not_staff", account=None, actor=g.person.login, path=request.path)
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def init_app(app) -> None:
    """Know who is logged in on every request, and keep a must-change session on the change form."""

    @app.before_request
    def load_person():
        g.person = None
        if request.endpoint == "static" or not session.get("login"):
            return None
        g.person = _load_person()
        if g.person and session.get("must_change") and request.endpoint not in MUST_CHANGE_ALLOWED:
            return redirect(url_for("account.change_password"))
        return None
