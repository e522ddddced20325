"""Log in, change the password, and keep a recovery address."""

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l

from pwdrst import audit, changes, identity, links, messages, ratelimit
from pwdrst.directory import (
    AccountLocked,
    InvalidCredentials,
    PasswordExpired,
    PasswordRejected,
)
from pwdrst.forms import ButtonForm, ChangePasswordForm, LoginForm, RecoveryAddressForm, RemoveRecoveryForm
from pwdrst.identity import LoginLimited, login_required
from pwdrst.links import TokenError
from pwdrst.messages import refusal
from pwdrst.policy import current_policy
from pwdrst.ratelimit import RateLimited
from pwdrst.security import secret_page

bp = Blueprint("account", __name__)

# The login page's state for each refusal, and its status. A wrong password, an unknown login, a
# locked account and a shared address are all InvalidCredentials: one page, so nobody learns which.
LOGIN_REFUSALS = {
    InvalidCredentials: ("invalid", 401),
    LoginLimited: ("limited", 429),
}


@bp.route("/login", methods=["GET", "POST"])
@secret_page
def login():
    """Log in with a login or any address and the password; a bind to the directory decides."""
    form = LoginForm()
    state, status = None, 200
    if form.validate_on_submit():
        try:
            auth = identity.log_in(form.identifier.data, form.password.data)
        except PasswordExpired as exc:
            flash(messages.expired_notice(exc), "warning")
            return redirect(url_for("account.change_password"), 303)
        except tuple(LOGIN_REFUSALS) as exc:
            state, status = LOGIN_REFUSALS[type(exc)]
        else:
            if auth.expires_in is not None:
                flash(messages.expiry_notice(auth.expires_in), "warning")
            if not request.args.get("next") and "helpdesk" in session.get("roles", ()):
                return redirect(url_for("helpdesk.search"), 303)  # staff log in to help people
            return redirect(identity.safe_next(request.args.get("next")), 303)
    elif form.errors:
        status = 400
    return render_template("account/login.html", form=form, state=state), status


@bp.post("/logout")
def logout():
    """End the session."""
    if not ButtonForm().validate_on_submit():
        abort(400)
    identity.end_session()
    flash(_l("You have logged out."), "success")
    return redirect(url_for("main.index"), 303)


@bp.route("/password", methods=["GET", "POST"])
@login_required
@secret_page
def change_password():
    """Change the password: the current one again, then the new one twice."""
    account = g.person.account
    form = ChangePasswordForm(account=account)
    if form.validate_on_submit():
        try:
            changes.change_own(account, form.current_password.data, form.new_password.data)
        except (InvalidCredentials, AccountLocked) as exc:
            form.current_password.errors.append(
                refusal("locked" if isinstance(exc, AccountLocked) else "wrong_current")
            )
        except PasswordRejected as exc:
            form.new_password.errors.append(refusal(exc.reason, exc.details))
        else:
            session.pop("must_change", None)
            session["changed"] = True
            return redirect(url_for("account.changed"), 303)
    elif form.errors:
        audit.log("password_changed", "refused", account=account.login, reason="policy")
    page = render_template(
        "account/password.html",
        form=form,
        account=account,
        policy=current_policy(),
        must_change=session.get("must_change"),
    )
    return page, 400 if form.errors else 200


@bp.get("/password/changed")
@login_required
def changed():
    """Say that mail and SSO take the new password now."""
    if not session.pop("changed", None):
        return redirect(url_for("account.change_password"))
    return render_template("account/changed.html")


# -- recovery addresses


def reauthenticated(account, form) -> bool:
    """Check the form's current password as the person; put the refusal by the field if it is wrong."""
    try:
        identity.reauthenticate(account, form.current_password.data)
    except LoginLimited:
        raise RateLimited() from None
    except (InvalidCredentials, AccountLocked, PasswordExpired) as exc:
        reason = {AccountLocked: "locked", PasswordExpired: "expired"}.get(type(exc), "wrong_current")
        form.current_password.errors.append(refusal(reason))
    else:
        return True
    return False


@bp.route("/recovery", methods=["GET", "POST"])
@login_required
@secret_page
def recovery():
    """Show the recovery addresses and send a confirmation link to a new one (the password again first)."""
    account = g.person.account
    form = RecoveryAddressForm(account=account)
    if form.validate_on_submit() and reauthenticated(account, form):
        ratelimit.recovery_mail(account)
        address = form.address.data.strip()
        links.send_recovery_confirmation(account, address, replace=form.replace.data)
        flash(messages.confirmation_sent(address), "success")
        return redirect(url_for("account.recovery"), 303)
    page = render_template("account/recovery.html", form=form, account=account)
    return page, 400 if form.errors else 200


@bp.post("/recovery/remove")
@login_required
@secret_page
def remove_recovery():
    """Remove one recovery address, after the current password (and a confirmation for the last one)."""
    account = g.person.account
    form = RemoveRecoveryForm(account=account)
    valid = form.validate_on_submit()
    if form.index.errors:
        abort(400)
    if "current_password" not in request.form:
        # The Remove button of the list: ask for the password on a page of its own.
        form.confirm.errors, form.current_password.errors = [], []
        return render_template("account/remove_recovery.html", form=form, account=account)
    if valid and reauthenticated(account, form):
        changes.remove_recovery_address(account, form.index.data)
        flash(_l("The recovery address was removed."), "success")
        return redirect(url_for("account.recovery"), 303)
    return render_template("account/remove_recovery.html", form=form, account=account), 400


@bp.get("/recovery/<token>")
@secret_page
def open_confirmation(token):
    """Move a confirmation token into the session and show the confirm button (no change on GET)."""
    session["recovery_token"] = token
    return redirect(url_for("account.confirm_recovery"), 303)


@bp.route("/recovery/confirm", methods=["GET", "POST"])
@secret_page
def confirm_recovery():
    """Store a new recovery address once its owner confirms it from the link."""
    try:
        account, mode, address = links.verify_recovery(session.get("recovery_token"))
    except TokenError as exc:
        session.pop("recovery_token", None)
        audit.log("recovery_confirmed", "refused", reason=str(exc))
        return render_template("account/recovery_refused.html"), 400
    form = ButtonForm()
    if form.validate_on_submit():
        changes.add_recovery_address(account, mode, address)
        session.pop("recovery_token", None)
        return render_template("account/recovery_confirmed.html", address=address)
    return render_template("account/recovery_confirm.html", form=form, account=account, address=address)
