"""Friendly error pages: every refusal is a page in the person's language, never a traceback."""

import logging

from flask import Response, jsonify, render_template, request
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, SecurityError

from pwdrst.directory import DirectoryUnavailable
from pwdrst.ratelimit import RateLimited

logger = logging.getLogger(__name__)

MESSAGES = {
    400: (_l("Bad request"), _l("The request could not be understood. Go back and try again.")),
    403: (_l("Access denied"), _l("You do not have access to this page.")),
    404: (_l("Page not found"), _l("There is no such page. Check the address or start from the home page.")),
    405: (_l("Method not allowed"), _l("This page cannot be used this way. Start from the home page.")),
    413: (_l("Too much data"), _l("The form sent more data than any field takes. Shorten it and try again.")),
    429: (_l("Too many attempts"), _l("Too many attempts in a short time. Wait a while and try again.")),
    500: (
        _l("Something went wrong"),
        _l("An unexpected error occurred. Try again; if it keeps happening, contact the helpdesk."),
    ),
    503: (
        _l("Service unavailable"),
        _l("The account directory is not answering right now. Try again in a few minutes."),
    ),
}


def wants_json() -> bool:
    """Return whether the client asked for JSON (the strength endpoint) rather than a page."""
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def render_error(status: int, message=None):
    """Render the error page (or JSON) for a status code."""
    title, default = MESSAGES.get(status, MESSAGES[500] if status >= 500 else MESSAGES[400])
    text = str(message or default)
    if wants_json():
        return jsonify(error=str(title), message=text), status
    return render_template("errors/error.html", status=status, title=title, message=text), status


def init_app(app) -> None:
    """Register the error handlers."""

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_error(
            400, _l("The form has expired or was not sent from this site. Reload the page and try again.")
        )

    @app.errorhandler(SecurityError)
    def untrusted_host(error):
        # Not a page: building one needs the very Host header that was refused.
        return Response("400: nieznany host / unknown host\n", 400, mimetype="text/plain")

    @app.errorhandler(RateLimited)
    def rate_limited(error):
        return render_error(429)

    @app.errorhandler(DirectoryUnavailable)
    def directory_unavailable(error):
        logger.warning("directory unavailable: %s", error)
        return render_error(503)

    @app.errorhandler(HTTPException)
    def http_error(error):
        if isinstance(error, InternalServerError):
            return unexpected(error)
        return render_error(error.code or 500)

    @app.errorhandler(Exception)
    def unexpected(error):
        original = getattr(error, "original_exception", None) or error
        # The route's pattern, not the path: a link's path holds its token, and logs must not.
        where = request.url_rule.rule if request.url_rule else request.path
        logger.error("unexpected error on %s %s", request.method, where, exc_info=original)
        return render_error(500)
