"""Log in, change the password, and keep a recovery address."""

from datetime import UTC, datetime
from functools import wraps

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from pwdrst import audit, mail, ratelimit
from pwdrst.directory import (
    Account,
    AccountLocked,
    AmbiguousAccount,
    InvalidCredentials,
    PasswordExpired,
    PasswordRejected,
    directory,
)
from pwdrst.extensions import client_address
from pwdrst.forms import ButtonForm, ChangePasswordForm, LoginForm, RecoveryAddressForm, RemoveRecoveryForm
from pwdrst.helpdesk import staff_roles
from pwdrst.messages import refusal
from pwdrst.policy import current_policy
from pwdrst.reset import notify_password_changed, public_url
from pwdrst.security import secret_page
from pwdrst.tokens import TokenError, make_token, read_token, same_state

bp = Blueprint("account", __name__)

OUTSIDE_ADDRESS = _l(
    "Use a private address outside the university: it must work when your university mailbox does not."
)

# Pages a person whose password has expired may still reach (the "must change" path).
MUST_CHANGE_ALLOWED = {"account.change_password", "account.logout", "api.strength", "static", "main.set_language"}


def login_required(view):
    """Send a visitor without a session to the login page, then back."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not session.get("login"):
            return redirect(url_for("account.login", next=request.path))
        return view(*args, **kwargs)

    return wrapper


@bp.before_app_request
def load_person():
    """Know who is logged in, and keep a must-change session on the change form."""
    g.login = session.get("login")
    g.staff = session.get("staff", False)
    if g.login and session.get("must_change") and request.endpoint not in MUST_CHANGE_ALLOWED:
        return redirect(url_for("account.change_password"))
    return None


# What the session remembers of the account: enough for the policy's personal words, the page and
# the notification mail, so that a password change costs the directory what the change itself does
# (a bind and Password Modify), not a search as well. The cookie is signed: it cannot be forged.
SESSION_ACCOUNT = ("dn", "login", "display_name", "given_name", "surname", "addresses", "recovery_addresses")


def remember_account(account) -> None:
    """Keep the account's details in the session."""
    session["account"] = {name: getattr(account, name) for name in SESSION_ACCOUNT}


def current_account():
    """Return the logged-in person's account, read again from the directory."""
    account = directory.get_account(session["login"])
    if account is None:
        session.clear()
        abort(403)
    remember_account(account)
    return account


def session_account():
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


def safe_next(target: str | None) -> str:
    """Return target if it is a path on this site, else the change form."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return request.script_root + target
    return url_for("account.change_password")


def start_session(account, must_change: bool = False) -> None:
    """Begin a fresh session (a new CSRF token, nothing carried over) for the account."""
    session.clear()
    session.permanent = True
    session["login"] = account.login
    session["since"] = datetime.now(UTC).isoformat(timespec="seconds")
    remember_account(account)
    if must_change:
        session["must_change"] = True


def attempt_login(identifier: str, password: str):
    """Bind as the person; return (state, account or None). Failures are counted, limits checked first."""
    config = current_app.config
    key = identifier.strip().lower()
    if not (
        ratelimit.test(config["RATELIMIT_LOGIN_ADDRESS"], "login-fail-address", client_address())
        and ratelimit.test(config["RATELIMIT_LOGIN_ACCOUNT"], "login-fail-account", key)
    ):
        # Refused before the directory hears of it.
        audit.log("login", "limited", account=None, identifier_known=False)
        return "limited", None
    try:
        auth = directory.authenticate(identifier, password)
    except InvalidCredentials:
        ratelimit.hit(config["RATELIMIT_LOGIN_ADDRESS"], "login-fail-address", client_address())
        ratelimit.hit(config["RATELIMIT_LOGIN_ACCOUNT"], "login-fail-account", key)
        audit.log("login", "failed", reason="invalid_credentials")
        return "invalid", None
    except AccountLocked:
        audit.log("login", "failed", reason="locked")
        return "locked", None
    except AmbiguousAccount as exc:
        audit.log("login", "failed", reason="ambiguous", accounts=list(exc.dns))
        return "ambiguous", None
    except PasswordExpired as exc:
        audit.log("login", "ok", account=exc.account.login, must_change=True, grace_remaining=exc.grace_remaining)
        return "expired", exc
    audit.log("login", "ok", account=auth.account.login)
    return "ok", auth


@bp.route("/login", methods=["GET", "POST"])
@secret_page
def login():
    """Log in with a login or any address and the password; a bind to the directory decides."""
    form = LoginForm()
    state = None
    if form.validate_on_submit():
        state, result = attempt_login(form.identifier.data, form.password.data)
        if state == "ok":
            start_session(result.account)
            session["staff"] = bool(staff_roles(result.account))
            if result.expires_in is not None:
                days = max(1, result.expires_in // 86400)
                flash(
                    ngettext(
                        "Your password expires in %(num)d day. Change it now.",
                        "Your password expires in %(num)d days. Change it now.",
                        days,
                    ),
                    "warning",
                )
            return redirect(safe_next(request.args.get("next")), 303)
        if state == "expired":
            start_session(result.account, must_change=True)
            if result.bound:
                flash(
                    _l(
                        "Your password has expired. Set a new one now (grace logins left: %(n)d).",
                        n=result.grace_remaining,
                    ),
                    "warning",
                )
            else:
                flash(_l("Your password has expired. Set a new one now."), "warning")
            return redirect(url_for("account.change_password"), 303)
    status = 200
    if form.errors:
        status = 400
    elif state == "limited":
        status = 429
    elif state in ("invalid", "locked", "ambiguous"):
        status = 401 if state == "invalid" else 403
    return render_template("account/login.html", form=form, state=state), status


@bp.post("/logout")
def logout():
    """End the session."""
    form = ButtonForm()
    if not form.validate_on_submit():
        abort(400)
    if session.get("login"):
        audit.log("logout", "ok", account=session["login"])
    session.clear()
    flash(_l("You have logged out."), "success")
    return redirect(url_for("main.index"), 303)


@bp.route("/password", methods=["GET", "POST"])
@login_required
@secret_page
def change_password():
    """Change the password: the current one again, then the new one twice."""
    account = session_account()
    form = ChangePasswordForm(account=account)
    if form.validate_on_submit():
        try:
            how = directory.change_password(account, form.current_password.data, form.new_password.data)
        except InvalidCredentials:
            form.current_password.errors.append(refusal("wrong_current"))
            audit.log("password_changed", "refused", account=account.login, reason="wrong_current")
        except AccountLocked:
            form.current_password.errors.append(refusal("locked"))
            audit.log("password_changed", "refused", account=account.login, reason="locked")
        except PasswordRejected as exc:
            form.new_password.errors.append(refusal(exc.reason))
            audit.log("password_changed", "refused", account=account.login, reason=exc.reason)
        else:
            audit.log("password_changed", "ok", account=account.login, expired_password=(how == "expired"))
            session.pop("must_change", None)
            notify_password_changed(account, how="change")
            session["changed"] = True
            return redirect(url_for("account.changed"), 303)
    elif form.errors:
        audit.log("password_changed", "refused", account=account.login, reason="policy")
    status = 400 if form.errors else 200
    return render_template(
        "account/password.html",
        form=form,
        account=account,
        policy=current_policy(),
        must_change=session.get("must_change"),
    ), status


@bp.get("/password/changed")
@login_required
def changed():
    """Say that mail and SSO take the new password now."""
    if not session.pop("changed", None):
        return redirect(url_for("account.change_password"))
    return render_template("account/changed.html")


# -- recovery addresses


def forbidden_address(address: str, account) -> bool:
    """Return whether address is the organisation's own (or one of the account's university addresses)."""
    domain = address.rsplit("@", 1)[-1].lower()
    for forbidden in current_app.config["RECOVERY_FORBIDDEN_DOMAINS"]:
        forbidden = forbidden.lower().lstrip(".")
        if domain == forbidden or domain.endswith("." + forbidden):
            return True
    return address.lower() in {a.lower() for a in account.addresses}


def recovery_state(account) -> str:
    """Return a fingerprint of the recovery addresses, so a confirmation dies if they change."""
    from pwdrst.directory import fingerprint

    return fingerprint(account.dn, "\n".join(sorted(a.lower() for a in account.recovery_addresses)))


@bp.route("/recovery", methods=["GET", "POST"])
@login_required
def recovery():
    """Show the recovery addresses and send a confirmation link to a new one."""
    account = current_account()
    form = RecoveryAddressForm()
    if form.validate_on_submit():
        address = form.address.data.strip()
        if forbidden_address(address, account):
            form.address.errors.append(str(OUTSIDE_ADDRESS))
        elif not ratelimit.hit(current_app.config["RATELIMIT_RECOVERY_MAIL"], "recovery-mail", account.dn):
            abort(429)
        else:
            mode = "replace" if form.replace.data else "add"
            token = make_token("recovery", account.login, recovery_state(account), extra=f"{mode}:{address}")
            mail.send(
                "recovery_confirm",
                [address],
                _l("Confirm your recovery address"),
                "recovery_confirm",
                link=public_url("/recovery/" + token),
                login=account.login,
                display_name=account.display_name,
                hours=int(current_app.config["RECOVERY_LINK_MAX_AGE"]) // 3600,
            )
            audit.log("recovery_requested", "sent", account=account.login, mode=mode)
            flash(
                _l(
                    "We have sent a confirmation link to %(address)s. The address is saved once you open it.",
                    address=address,
                ),
                "success",
            )
            return redirect(url_for("account.recovery"), 303)
    return render_template("account/recovery.html", form=form, account=account, remove=RemoveRecoveryForm()), (
        400 if form.errors else 200
    )


@bp.post("/recovery/remove")
@login_required
def remove_recovery():
    """Remove one recovery address; removing the last one asks for confirmation first."""
    account = current_account()
    form = RemoveRecoveryForm()
    if not form.validate_on_submit() or form.index.data >= len(account.recovery_addresses):
        abort(400)
    if len(account.recovery_addresses) == 1 and not form.confirm.data:
        return render_template("account/remove_last.html", form=form, account=account)
    removed = account.recovery_addresses[form.index.data]
    remaining = [a for i, a in enumerate(account.recovery_addresses) if i != form.index.data]
    directory.set_recovery_addresses(account, remaining)
    audit.log("recovery_removed", "ok", account=account.login, left=len(remaining))
    notify_recovery_changed(account, [removed])
    flash(_l("The recovery address was removed."), "success")
    return redirect(url_for("account.recovery"), 303)


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
    token = session.get("recovery_token")
    try:
        if not token:
            raise TokenError("missing")
        held = read_token("recovery", token, int(current_app.config["RECOVERY_LINK_MAX_AGE"]))
        account = directory.get_account(held.login)
        mode, _, address = (held.extra or "").partition(":")
        if account is None or mode not in ("add", "replace") or not same_state(held, recovery_state(account)):
            raise TokenError("used")
    except TokenError as exc:
        session.pop("recovery_token", None)
        audit.log("recovery_confirmed", "refused", reason=str(exc))
        return render_template("account/recovery_refused.html"), 400
    form = ButtonForm()
    if form.validate_on_submit():
        before = list(account.recovery_addresses)
        after = (
            [address]
            if mode == "replace"
            else before + [a for a in [address] if a.lower() not in map(str.lower, before)]
        )
        directory.set_recovery_addresses(account, after)
        session.pop("recovery_token", None)
        audit.log("recovery_confirmed", "ok", account=account.login, mode=mode)
        if before:
            notify_recovery_changed(account, before)
        return render_template("account/recovery_confirmed.html", address=address)
    return render_template("account/recovery_confirm.html", form=form, account=account, address=address)


def notify_recovery_changed(account, recipients) -> None:
    """Tell the previous recovery addresses that the recovery addresses changed."""
    mail.send(
        "recovery_changed",
        recipients,
        _l("Your recovery address was changed"),
        "recovery_changed",
        login=account.login,
        display_name=account.display_name,
        when=datetime.now(UTC),
        client=client_address(),
    )
