"""Who is asking: logging in, the session that remembers it, and the roles that grant the helpdesk.

Views of every blueprint guard themselves with `login_required` and `staff_required` from here, so
that no blueprint imports another.
"""

import time
from dataclasses import dataclass
from functools import wraps

from flask import abort, current_app, g, redirect, request, session, url_for

from pwdrst import audit, ratelimit, sessions
from pwdrst.directory import (
    Account,
    AccountLocked,
    AmbiguousAccount,
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
    """The logged-in person: their account as the directory has it now, and their helpdesk roles."""

    account: Account
    roles: frozenset[str]

    @property
    def login(self) -> str:
        """Return the person's login."""
        return self.account.login

    @property
    def staff(self) -> bool:
        """Return whether the person may use the helpdesk."""
        return "helpdesk" in self.roles


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
    """Bind as the person; failures are counted, and limits checked before the directory hears of it.

    Raise LoginLimited, InvalidCredentials, AccountLocked, AmbiguousAccount or PasswordExpired.
    """
    if not ratelimit.login_allowed(identifier):
        audit.log("login", "limited", account=None, identifier_known=False)
        raise LoginLimited()
    try:
        auth = directory.authenticate(identifier, password)
    except InvalidCredentials:
        ratelimit.login_failed(identifier)
        audit.log("login", "failed", reason="invalid_credentials")
        raise
    except AccountLocked:
        audit.log("login", "failed", reason="locked")
        raise
    except AmbiguousAccount as exc:
        audit.log("login", "failed", reason="ambiguous", accounts=list(exc.dns))
        raise
    except PasswordExpired as exc:
        audit.log("login", "ok", account=exc.account.login, must_change=True, grace_remaining=exc.grace_remaining)
        start_session(exc.account, must_change=True)
        raise
    audit.log("login", "ok", account=auth.account.login)
    start_session(auth.account)
    return auth


def start_session(account: Account, must_change: bool = False) -> None:
    """Begin a fresh session under a new id (a new CSRF token, nothing carried over) for the account."""
    session.clear()
    sessions.renew_id()
    now = time.time()
    session.permanent = True
    session["login"] = account.login
    session["started"] = session["seen"] = now
    session["generation"] = sessions.generation(account.login)
    session["fingerprint"] = account.fingerprint
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
    session["fingerprint"] = fresh.fingerprint if fresh else ""
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
    if not reason and account.fingerprint != session.get("fingerprint"):
        reason = "password_changed_elsewhere"
    if reason:
        end_session(reason)
        return None
    session["seen"] = now
    roles = frozenset(staff_roles(account))
    if sorted(roles) != session.get("roles"):
        session["roles"] = sorted(roles)
        sessions.renew_id()
    return Person(account, roles)


def safe_next(target: str | None) -> str:
    """Return target if it is a path on this site, else the change form."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return request.script_root + target
    return url_for("account.change_password")


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
