"""The home page, the language switch and the health check."""

import logging
import os

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)

from pwdrst.directory import DirectoryError, directory
from pwdrst.extensions import LANGUAGE_COOKIE
from pwdrst.identity import safe_next

logger = logging.getLogger(__name__)

bp = Blueprint("main", __name__)


@bp.get("/")
def index():
    """Show the home page with the ways in."""
    return render_template("main/index.html")


@bp.get("/lang/<code>")
def set_language(code):
    """Remember the chosen language and go back to the page it was chosen on."""
    if code not in current_app.config["LANGUAGES"]:
        return redirect(url_for("main.index"))
    response = redirect(safe_next(request.args.get("next"), url_for("main.index")))
    response.set_cookie(
        LANGUAGE_COOKIE,
        code,
        max_age=365 * 24 * 3600,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
        httponly=True,
    )
    return response


@bp.get("/theme/theme.css")
def theme_css():
    """Serve the organisation's colour as CSS variables: a file, since the CSP forbids inline styles."""
    colour = current_app.config["ORGANISATION_COLOUR"]
    css = f":root {{ --brand: {colour}; --brand-dark: {darker(colour)}; }}\n"
    return Response(css, mimetype="text/css", headers={"Cache-Control": "public, max-age=3600"})


@bp.get("/theme/<any(logo, favicon):kind>")
def theme_file(kind):
    """Serve the organisation's logo or favicon file."""
    path = current_app.config[f"ORGANISATION_{kind.upper()}_FILE"]
    if not path:
        abort(404)
    return send_file(os.path.abspath(path), max_age=3600)


def darker(colour: str) -> str:
    """Return the colour a fifth darker, for hovers."""
    return "#" + "".join(f"{int(int(colour[i : i + 2], 16) * 0.8):02x}" for i in (1, 3, 5))


@bp.get("/healthz")
def healthz():
    """Say whether the directory answers."""
    try:
        directory.check_service()
    except DirectoryError as exc:
        # The reason names servers and DNs: for the log, not for whoever asks.
        logger.warning("health check: directory unavailable: %s", exc)
        return jsonify(directory="unavailable"), 503
    return jsonify(directory="ok")
