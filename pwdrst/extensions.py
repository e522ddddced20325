"""The Flask extensions, created here and bound to the app by the factory."""

from flask import current_app, has_request_context, request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_wtf.csrf import CSRFProtect

LANGUAGE_COOKIE = "pwdrst_lang"


def client_address() -> str:
    """Return the client's address (ProxyFix has already applied the trusted proxies)."""
    return request.remote_addr or "unknown"


def select_locale() -> str:
    """Pick the language: the switch's cookie, else the browser's Accept-Language, else the default."""
    languages = current_app.config["LANGUAGES"]
    if not has_request_context():  # the command line
        return languages[0]
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in languages:
        return chosen
    return request.accept_languages.best_match(languages) or languages[0]


babel = Babel()
csrf = CSRFProtect()
limiter = Limiter(key_func=client_address)
