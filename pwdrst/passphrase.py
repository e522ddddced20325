"""Passphrase suggestions: five random words from the interface language's list (static/words/)."""

import functools
import os
import secrets

from flask import current_app
from flask_babel import get_locale

WORDS = 5
SEPARATOR = "-"


@functools.cache
def words(folder: str, language: str) -> tuple[str, ...]:
    """Return the word list of a language, read once."""
    with open(os.path.join(folder, "words", f"{language}.txt"), encoding="utf-8") as fh:
        return tuple(line.strip() for line in fh if line.strip())


def suggest() -> str:
    """Return a passphrase of five words chosen with secrets.choice, for the form without JavaScript."""
    language = "en" if str(get_locale()) == "en" else "pl"
    chosen = words(current_app.static_folder, language)
    return SEPARATOR.join(secrets.choice(chosen) for _ in range(WORDS))


def init_app(app) -> None:
    """Let templates ask for a suggestion."""
    app.jinja_env.globals["suggest_passphrase"] = suggest
