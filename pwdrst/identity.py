"""Who is asking: logging in, the session that remembers it, and the roles that grant the helpdesk.

Views of every blueprint guard themselves with `login_required` and `staff_required` from here, so
that no blueprint imports another.
"""

import re
import unicodedata
from functools import wraps
from urllib.parse import unquote

from flask import abort, current_app, g, redirect, request, session, url_for

from pwdrst import audit, ratelimit
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

# What the session remembers of the account: enough for the policy's personal words, the page and
# the notification mail, so that a password change costs the directory what the change itself does
# (a bind and Password Modify), not a search as well. The cookie is signed: it cannot be forged.
SESSION_ACCOUNT = ("dn", "login", "display_name", "given_name", "surname", "addresses", "recovery_addresses")


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
    """Begin a fresh session (a new CSRF token, nothing carried over) for the account."""
    session.clear()
    session.permanent = True
    session["login"] = account.login
    session["account"] = {name: getattr(account, name) for name in SESSION_ACCOUNT}
    session["staff"] = bool(staff_roles(account))
    if must_change:
        session["must_change"] = True


def end_session() -> None:
    """Forget who is logged in."""
    if session.get("login"):
        audit.log("logout", "ok", account=session["login"])
    session.clear()


def current_account() -> Account:
    """Return the logged-in person's account, read again from the directory."""
    account = directory.get_account(session["login"])
    if account is None:
        session.clear()
        abort(403)
    session["account"] = {name: getattr(account, name) for name in SESSION_ACCOUNT}
    return account


def session_account() -> Account:
    """Return the logged-in person's account as the session remembers it (read afresh if it does not)."""
    held = session.get("account")
    if not isinstance(held, dict) or held.get("login") != session["login"] or set(held) != set(SESSION_ACCOUNT):
        return current_account()
    return Account(
        **{name: tuple(value) if isinstance(value, list) else value for name, value in held.items()},
        locked=False,
        password_expired=False,
        password_changed_at=None,
        fingerprint="",
    )


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
        if not session.get("login"):
            return redirect(url_for("account.login", next=request.path))
        return view(*args, **kwargs)

    return wrapper


def staff_required(view):
    """Let only helpdesk and admin group members in; others get a 403 page (and an audit line)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not session.get("login"):
            if request.method == "GET":
                return redirect(url_for("account.login", next=request.path))
            abort(403)
        me = directory.get_account(session["login"])
        roles = staff_roles(me) if me else set()
        if "helpdesk" not in roles:
            audit.log("helpdesk_refused", "not_staff", account=None, actor=session["login"], path=request.path)
            abort(403)
        g.staff_account, g.roles = me, roles
        return view(*args, **kwargs)

    return wrapper


def init_app(app) -> None:
    """Know who is logged in on every request, and keep a must-change session on the change form."""

    @app.before_request
    def load_person():
        g.login = session.get("login")
        g.staff = session.get("staff", False)
        if g.login and session.get("must_change") and request.endpoint not in MUST_CHANGE_ALLOWED:
            return redirect(url_for("account.change_password"))
        return None
