"""Forgot password: a signed link sent to the recovery address, and the page it opens."""

from datetime import UTC, datetime

from flask import Blueprint, abort, current_app, redirect, render_template, session, url_for
from flask_babel import lazy_gettext as _l

from pwdrst import audit, mail, ratelimit
from pwdrst.directory import AccountChanged, AmbiguousAccount, PasswordRejected, directory
from pwdrst.extensions import client_address
from pwdrst.forms import IdentifierForm, NewPasswordForm
from pwdrst.messages import refusal
from pwdrst.policy import current_policy
from pwdrst.security import secret_page
from pwdrst.tokens import TokenError, TokenExpired, TokenInvalid, TokenUsed, make_token, read_token, same_state

bp = Blueprint("reset", __name__)

# Link purposes the reset page accepts, with the longest lifetime each may have. Helpdesk and
# command-line links carry their own, shorter lifetime inside the signed token.
LINK_PURPOSES = (
    ("reset", lambda config: int(config["RESET_LINK_MAX_AGE"])),
    ("helpdesk", lambda config: max(86400, int(config["CLI_LINK_MAX_AGE_CAP"]))),
)


def public_url(path: str) -> str:
    """Build an absolute link from PUBLIC_URL, never from the request's Host header."""
    return current_app.config["PUBLIC_URL"] + path


def reset_link(token: str) -> str:
    """Return the link a person follows to set a new password."""
    return public_url("/reset/" + token)


def issue_link(account, purpose: str = "reset", max_age: int | None = None) -> str:
    """Return a new reset link for the account's current password state.

    Self-service links live RESET_LINK_MAX_AGE; helpdesk and command-line links carry their own
    lifetime in the signed token.
    """
    return reset_link(make_token(purpose, account.login, account.fingerprint, max_age))


def send_link(account, recipients, link: str, max_age: int | None = None, issued_by: str | None = None) -> None:
    """Queue the reset mail with a link to the given addresses."""
    seconds = max_age or int(current_app.config["RESET_LINK_MAX_AGE"])
    mail.send(
        "reset",
        recipients,
        _l("Set a new password"),
        "reset",
        link=link,
        login=account.login,
        display_name=account.display_name,
        minutes=seconds // 60,
        hours=seconds // 3600,
        issued_by=issued_by,
    )


def send_reset_link(identifier: str) -> str:
    """Send a reset link to the account's recovery addresses if it may have one; return the outcome.

    Every case does the same directory work (one lookup) and never waits for SMTP.
    """
    config = current_app.config
    address_allowed = ratelimit.hit(config["RATELIMIT_RESET_REQUEST"], "reset-request", client_address())
    try:
        account = directory.find_account(identifier)
    except AmbiguousAccount as exc:
        audit.log("reset_requested", "ambiguous", accounts=list(exc.dns))
        return "ambiguous"
    if not address_allowed:
        outcome = "limited"
    elif account is None:
        outcome = "unknown"
    elif not account.recovery_addresses:
        outcome = "no_recovery_address"
    elif not all(
        [ratelimit.hit(config["RATELIMIT_RESET_MAIL"], "reset-mail-account", account.dn)]
        + [
            ratelimit.hit(config["RATELIMIT_RESET_MAIL"], "reset-mail-address", a.lower())
            for a in account.recovery_addresses
        ]
    ):
        outcome = "limited"
    else:
        send_link(account, account.recovery_addresses, issue_link(account))
        outcome = "sent"
    audit.log("reset_requested", outcome, account=account.login if account else None)
    return outcome


def verify_link(token: str):
    """Return (token, account) for a usable reset link; raise TokenError saying why not."""
    expired = False
    for purpose, cap in LINK_PURPOSES:
        try:
            held = read_token(purpose, token, cap(current_app.config))
        except TokenExpired:
            expired = True
            continue
        except TokenInvalid:
            continue
        account = directory.get_account(held.login)
        if account is None or not same_state(held, account.fingerprint):
            raise TokenUsed("used")
        return held, account
    raise TokenExpired("expired") if expired else TokenInvalid("invalid")


def refused(error: TokenError | None):
    """Render the page for a link that cannot be used."""
    kind = {TokenExpired: "expired", TokenUsed: "used"}.get(type(error), "invalid" if error else "missing")
    audit.log("link_refused", kind)
    status = 410 if kind in ("expired", "used") else 400
    return render_template("reset/refused.html", kind=kind), status


@bp.route("/reset", methods=["GET", "POST"])
def request_link():
    """Ask for a login or address and send a reset link; the answer never tells if it exists."""
    form = IdentifierForm()
    if form.validate_on_submit():
        send_reset_link(form.identifier.data)
        return redirect(url_for("reset.requested"), 303)
    return render_template("reset/request.html", form=form), 400 if form.errors else 200


@bp.get("/reset/sent")
def requested():
    """Say what happens next, the same way for every request."""
    return render_template("reset/requested.html", minutes=int(current_app.config["RESET_LINK_MAX_AGE"]) // 60)


@bp.get("/reset/<token>")
@secret_page
def open_link(token):
    """Check the link, move its token into the session, and go to a token-free address."""
    if not ratelimit.hit(current_app.config["RATELIMIT_LINK_USE"], "link-use", client_address()):
        abort(429)
    try:
        held, account = verify_link(token)
    except TokenError as exc:
        return refused(exc)
    session["reset"] = token
    session["reset_login"] = account.login
    audit.log("link_opened", "ok", account=account.login, purpose=held.purpose)
    return redirect(url_for("reset.new_password"), 303)


@bp.route("/reset/new", methods=["GET", "POST"])
@secret_page
def new_password():
    """Take the new password for the account the link in the session names."""
    token = session.get("reset")
    if not token:
        return refused(None)
    try:
        held, account = verify_link(token)
    except TokenError as exc:
        session.pop("reset", None)
        session.pop("reset_login", None)
        return refused(exc)
    form = NewPasswordForm(account=account)
    if form.validate_on_submit():
        if not ratelimit.hit(current_app.config["RATELIMIT_LINK_USE"], "link-use", client_address()):
            abort(429)
        try:
            directory.reset_password(
                account, form.new_password.data, unlock=current_app.config["RESET_UNLOCKS_ACCOUNT"], as_read=True
            )
        except AccountChanged:
            # The same link was used a moment ago (another tab, a double click): it worked once.
            session.pop("reset", None)
            session.pop("reset_login", None)
            return refused(TokenUsed("used"))
        except PasswordRejected as exc:
            form.new_password.errors.append(refusal(exc.reason))
            audit.log("password_reset", "refused", account=account.login, reason=exc.reason, purpose=held.purpose)
        else:
            session.pop("reset", None)
            session.pop("reset_login", None)
            session["reset_done"] = account.login
            audit.log("password_reset", "ok", account=account.login, purpose=held.purpose, unlocked=account.locked)
            notify_password_changed(account)
            return redirect(url_for("reset.done"), 303)
    elif form.errors:
        audit.log("password_reset", "refused", account=account.login, reason="policy", purpose=held.purpose)
    status = 400 if form.errors else 200
    return render_template("reset/new.html", form=form, account=account, policy=current_policy()), status


@bp.get("/reset/done")
@secret_page
def done():
    """Tell the person the new password works for mail and SSO now."""
    login = session.pop("reset_done", None)
    if not login:
        return redirect(url_for("main.index"))
    return render_template("reset/done.html", login=login)


def notify_password_changed(account, how: str = "reset") -> None:
    """Tell every address of the account that its password changed, when and from where."""
    mail.send(
        "password_changed",
        account.all_addresses,
        _l("Your password was changed"),
        "password_changed",
        login=account.login,
        display_name=account.display_name,
        when=datetime.now(UTC),
        client=client_address(),
        how=how,
    )
