"""Response headers that every page carries, and the marks that tighten them on secret pages."""

from functools import wraps

from flask import g

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def mark_secret() -> None:
    """Mark the current response as showing or taking a secret (or personal data): never cached, no Referer."""
    g.secret_page = True


def secret_page(view):
    """Mark a view whose page shows or takes a secret: never cached, never sends a Referer."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        mark_secret()
        return view(*args, **kwargs)

    return wrapper


def init_app(app) -> None:
    """Add the security headers to every response."""
    https = app.config["SESSION_COOKIE_SECURE"]

    @app.after_request
    def add_headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        if g.get("secret_page"):
            headers["Referrer-Policy"] = "no-referrer"
            headers["Cache-Control"] = "no-store"
        else:
            headers.setdefault("Referrer-Policy", "same-origin")
        if https:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
