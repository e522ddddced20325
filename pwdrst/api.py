"""The JSON endpoint behind the browser's strength meter."""

from flask import Blueprint, g, jsonify, request, session
from flask_babel import gettext as _

from pwdrst import links, ratelimit
from pwdrst.directory import DirectoryError, directory
from pwdrst.extensions import limiter
from pwdrst.policy import check_password

bp = Blueprint("api", __name__, url_prefix="/api")

# The longest JSON body the meter sends for a password at the policy's maximum length is far less;
# anything larger is refused by MAX_CONTENT_LENGTH before it is parsed.


def page_account():
    """Return the account whose password the current page chooses (reset link or login), if any."""
    if g.person is not None and not session.get("reset_login"):
        return g.person.account
    login = session.get("reset_login")
    if not login:
        return None
    kept = links.kept_account(session.get("reset_account"))
    if kept is not None and kept.login == login:
        return kept  # read when the link was opened: no search per keystroke
    try:
        return directory.get_account(login)
    except DirectoryError:
        return None  # the meter still answers, without the person's own words


@bp.post("/strength")
@limiter.limit(ratelimit.strength_limit)
def strength():
    """Answer the policy's verdict on a password, for the meter."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("password"), str):
        return jsonify(error="bad_request", message=_('Send JSON like {"password": "..."}.')), 400
    # Kept (server-side) for the form's POST, which then need not score the same password again.
    verdict = check_password(data["password"], page_account(), reuse=False, remember=True)
    return jsonify(verdict.as_json())
