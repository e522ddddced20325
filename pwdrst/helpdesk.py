"""The helpdesk: staff find people and issue reset links; they never see or set a password."""

from functools import wraps

import segno
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from pwdrst import audit
from pwdrst.directory import directory
from pwdrst.extensions import limiter
from pwdrst.forms import IssueLinkForm, SearchForm
from pwdrst.reset import issue_link, send_link
from pwdrst.security import secret_page

bp = Blueprint("helpdesk", __name__, url_prefix="/helpdesk")

SEARCH_LIMIT = 50


def staff_roles(account) -> set[str]:
    """Return the account's helpdesk roles: "helpdesk" and/or "admin" (admins have every helpdesk right)."""
    config = current_app.config
    groups = directory.groups_of(account, [config["LDAP_HELPDESK_GROUP"], config["LDAP_ADMIN_GROUP"]])
    roles = set()
    if config["LDAP_ADMIN_GROUP"] in groups:
        roles |= {"admin", "helpdesk"}
    if config["LDAP_HELPDESK_GROUP"] in groups:
        roles.add("helpdesk")
    return roles


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


def is_protected(account) -> bool:
    """Return whether the account is in the protected group (only admins may handle it)."""
    return directory.is_member(account, current_app.config["LDAP_PROTECTED_GROUP"])


def target_account(login: str):
    """Return the account named in the address, or a 404 page."""
    account = directory.get_account(login)
    if account is None:
        abort(404)
    return account


@bp.get("/")
@staff_required
def search():
    """Search people by login, any address or name."""
    form = SearchForm(request.args, meta={"csrf": False})
    results, more, shared = [], False, {}
    if form.q.data:
        if form.validate():
            results, more = directory.search_accounts(form.q.data, SEARCH_LIMIT)
            shared = directory.shared_addresses(results)
        audit.log(
            "helpdesk_search",
            "ok",
            account=None,
            actor=g.staff_account.login,
            query=form.q.data[:256],
            results=len(results),
        )
    return render_template(
        "helpdesk/search.html", form=form, results=results, more=more, shared=shared, limit=SEARCH_LIMIT
    ), (400 if form.errors else 200)


@bp.get("/account/<login>")
@staff_required
def account_page(login):
    """Show what a helpdesk call needs to know about one account."""
    account = target_account(login)
    protected = is_protected(account)
    audit.log("helpdesk_viewed", "ok", account=account.login, actor=g.staff_account.login)
    return render_template(
        "helpdesk/account.html",
        account=account,
        protected=protected,
        may_issue=not protected or "admin" in g.roles,
        shared=directory.shared_addresses([account]),
        form=IssueLinkForm(),
        hours=int(current_app.config["HELPDESK_LINK_MAX_AGE"]) // 3600,
    )


def staff_key() -> str:
    """Rate-limit key for a staff member's link issuing."""
    return "helpdesk-issue:" + (session.get("login") or "anonymous")


@bp.post("/account/<login>/link")
@staff_required
@limiter.limit(lambda: current_app.config["RATELIMIT_HELPDESK_ISSUE"], key_func=staff_key)
def issue(login):
    """Issue a reset link: to the recovery address, to a typed address, or shown once on screen."""
    account = target_account(login)
    actor = g.staff_account.login
    if is_protected(account) and "admin" not in g.roles:
        audit.log("helpdesk_link", "refused", account=account.login, actor=actor, reason="protected")
        abort(403)
    form = IssueLinkForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return redirect(url_for("helpdesk.account_page", login=account.login), 303)
    max_age = int(current_app.config["HELPDESK_LINK_MAX_AGE"])
    delivery = form.delivery.data
    if delivery == "recovery" and not account.recovery_addresses:
        flash(_l("This account has no recovery address. Send the link to an address you checked, or show it."), "error")
        return redirect(url_for("helpdesk.account_page", login=account.login), 303)
    link = issue_link(account, "helpdesk", max_age)
    if delivery == "shown":
        session["shown_link"] = {"login": account.login, "link": link}
        audit.log("helpdesk_link", "issued", account=account.login, actor=actor, delivery="shown")
        return redirect(url_for("helpdesk.shown", login=account.login), 303)
    recipients = account.recovery_addresses if delivery == "recovery" else [form.address.data.strip()]
    send_link(account, recipients, link, max_age=max_age, issued_by="helpdesk")
    audit.log("helpdesk_link", "issued", account=account.login, actor=actor, delivery=delivery)
    flash(
        ngettext(
            "The link was sent. It is valid for %(num)d hour and dies at the first password change.",
            "The link was sent. It is valid for %(num)d hours and dies at the first password change.",
            max_age // 3600,
        ),
        "success",
    )
    return redirect(url_for("helpdesk.account_page", login=account.login), 303)


@bp.get("/account/<login>/shown")
@staff_required
@secret_page
def shown(login):
    """Show a link once, with a QR code, for handing over in person; a reload does not show it again."""
    held = session.pop("shown_link", None)
    if not held or held.get("login") != login:
        return render_template("helpdesk/shown.html", link=None, login=login), 410
    qr = segno.make(held["link"], error="m").svg_data_uri(scale=4)
    hours = int(current_app.config["HELPDESK_LINK_MAX_AGE"]) // 3600
    return render_template("helpdesk/shown.html", link=held["link"], login=login, qr=qr, hours=hours)
