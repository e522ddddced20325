"""Forgot password: ask for a link sent to the recovery address, and the page the link opens."""

from flask import Blueprint, current_app, redirect, render_template, session, url_for

from pwdrst import audit, changes, links, ratelimit
from pwdrst.directory import PasswordRejected
from pwdrst.forms import IdentifierForm, NewPasswordForm
from pwdrst.links import TokenError, TokenExpired, TokenUsed
from pwdrst.messages import refusal
from pwdrst.policy import current_policy
from pwdrst.security import secret_page

bp = Blueprint("reset", __name__)


def refused(error: TokenError):
    """Forget the link in the session and render the page for a link that cannot be used."""
    session.pop("reset", None)
    session.pop("reset_login", None)
    session.pop("reset_account", None)
    kind = {TokenExpired: "expired", TokenUsed: "used"}.get(type(error), str(error))
    kind = kind if kind in ("expired", "used", "missing") else "invalid"
    audit.log("link_refused", kind)
    return render_template("reset/refused.html", kind=kind), 410 if kind in ("expired", "used") else 400


@bp.route("/reset", methods=["GET", "POST"])
def request_link():
    """Ask for a login or address and send a reset link; the answer never tells if it exists."""
    form = IdentifierForm()
    if form.validate_on_submit():
        links.request_reset(form.identifier.data)
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
    ratelimit.link_use()
    try:
        held, account = links.verify_reset(token)
    except TokenError as exc:
        return refused(exc)
    session["reset"] = token
    session["reset_login"] = account.login
    # The form and the submit use this account, not another directory search (see links.verify_opened).
    session["reset_account"] = links.keep_account(account)
    audit.log("link_opened", "ok", account=account.login, purpose=held.purpose)
    return redirect(url_for("reset.new_password"), 303)


@bp.route("/reset/new", methods=["GET", "POST"])
@secret_page
def new_password():
    """Take the new password for the account the link in the session names."""
    try:
        held, account = links.verify_opened(session.get("reset"), session.get("reset_account"))
        form = NewPasswordForm(account=account)
        if form.validate_on_submit():
            still_locked = changes.reset_with_link(held, account, form.new_password.data)
            session.pop("reset")
            session.pop("reset_account", None)
            session["reset_still_locked"] = still_locked
            session["reset_done"] = session.pop("reset_login", account.login)
            return redirect(url_for("reset.done"), 303)
        if form.errors:
            audit.log("password_reset", "refused", account=account.login, reason="policy", purpose=held.purpose)
    except TokenError as exc:
        return refused(exc)
    except PasswordRejected as exc:
        form.new_password.errors.append(refusal(exc.reason, exc.details))
    page = render_template("reset/new.html", form=form, account=account, policy=current_policy())
    return page, 400 if form.errors else 200


@bp.get("/reset/done")
@secret_page
def done():
    """Tell the person the new password works for mail and SSO now."""
    login = session.pop("reset_done", None)
    still_locked = session.pop("reset_still_locked", False)
    if not login:
        return redirect(url_for("main.index"))
    return render_template("reset/done.html", login=login, still_locked=still_locked)
