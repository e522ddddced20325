"""How things are shown to people: masked addresses, labels in the page's language."""

from flask import current_app
from flask_babel import get_locale


def mask_address(address: str) -> str:
    """Show enough of an address to recognise it, not enough to harvest it: ja***@private.example."""
    local, at, domain = (address or "").partition("@")
    if not at:
        return "***"
    visible = local[:2] if len(local) > 3 else local[:1]
    return f"{visible}***@{domain}"


def in_language(label) -> str:
    """Return a configured label in the page's language: a string as it is, or from {language: text}.

    Without the page's language, the first of LANGUAGES that the label has, then any.
    """
    if isinstance(label, str):
        return label
    wanted = [str(get_locale() or ""), *current_app.config["LANGUAGES"]]
    return next((label[code] for code in wanted if code in label), next(iter(label.values()), ""))


def init_app(app) -> None:
    """Make the helpers available to templates."""
    app.jinja_env.filters["mask_address"] = mask_address
    app.jinja_env.filters["in_language"] = in_language
