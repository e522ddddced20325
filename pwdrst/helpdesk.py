"""The helpdesk: staff find people and issue reset links; they never see or set a password."""

import segno
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for

from pwdrst import audit, links, messages, ratelimit
from pwdrst.directory import directory
from pwdrst.extensions import limiter
from pwdrst.forms import IssueLinkForm, SearchForm
from pwdrst.identity import is_protected, staff_required
from pwdrst.links import CannotIssue
from pwdrst.security import mark_secret

bp = Blueprint("helpdesk", __name__, url_prefix="/helpdesk")
# Every helpdesk page shows people's personal data (and one shows a link): none may be cached.
bp.before_request(mark_secret)

SEARCH_LIMIT = 50


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
        audit.log("helpdesk_search", "ok", actor=g.person.login, query=form.q.data[:256], results=len(results))
    page = render_template(
        "helpdesk/search.html", form=form, results=results, more=more, shared=shared, limit=SEARCH_LIMIT
    )
    return page, 400 if form.errors else 200


@bp.get("/account/<login>")
@staff_required
def account_page(login):
    """Show what a helpdesk call needs to know about one account."""
    account = target_account(login)
    audit.log("helpdesk_viewed", "ok", account=account.login, actor=g.person.login)
    refusal = links.helpdesk_refusal(account, g.person.login, g.person.roles)
    return render_template(
        "helpdesk/account.html",
        account=account,
        protected=is_protected(account),
        may_issue=refusal is None,
        refusal=refusal,
        shared=directory.shared_addresses([account]),
        form=IssueLinkForm(),
        hours=int(current_app.config["HELPDESK_LINK_MAX_AGE"]) // 3600,
    )


@bp.post("/account/<login>/link")
@staff_required
@limiter.limit(ratelimit.helpdesk_issue_limit, key_func=ratelimit.staff_key)
def issue(login):
    """Issue a reset link: to the recovery address, to a typed address, or shown once on screen."""
    account = target_account(login)
    form = IssueLinkForm()
    try:
        if not form.validate_on_submit():
            raise CannotIssue("form")
        link = links.issue_helpdesk_link(
            account, g.person.login, g.person.roles, form.delivery.data, form.address.data or ""
        )
    except CannotIssue as exc:
        if exc.reason in links.NOT_YOURS:
            abort(403)
        for error in messages.issue_refusals(exc, form):
            flash(error, "error")
        return redirect(url_for("helpdesk.account_page", login=account.login), 303)
    if link:
        session["shown_link"] = {"login": account.login, "link": link}
        return redirect(url_for("helpdesk.shown", login=account.login), 303)
    sent_to = account.recovery_addresses if form.delivery.data == "recovery" else [form.address.data.strip()]
    flash(messages.link_sent(int(current_app.config["HELPDESK_LINK_MAX_AGE"]), sent_to), "success")
    return redirect(url_for("helpdesk.account_page", login=account.login), 303)


@bp.get("/account/<login>/shown")
@staff_required
def shown(login):
    """Show a link once, with a QR code, for handing over in person; a reload does not show it again."""
    held = session.pop("shown_link", None)
    if not held or held.get("login") != login:
        return render_template("helpdesk/shown.html", link=None, login=login), 410
    qr = segno.make(held["link"], error="m").svg_data_uri(scale=4)
    hours = int(current_app.config["HELPDESK_LINK_MAX_AGE"]) // 3600
    return render_template("helpdesk/shown.html", link=held["link"], login=login, qr=qr, hours=hours)
