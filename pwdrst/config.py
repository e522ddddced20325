"""Load the settings in layers and check them before the app starts."""

import json
import os
import re
import shlex
import shutil
from urllib.parse import urlsplit

import click
from flask import Config

from pwdrst import breach, default_config
from pwdrst.directory import is_valid_dn, parse_servers
from pwdrst.metrics import allowed_networks

PREFIX = "PWDRST_"

# PWDRST_* variables that belong to the tools around the app (gunicorn.conf.py, the demo, the tests).
TOOL_PREFIXES = ("PWDRST_CONFIG", "PWDRST_GUNICORN_", "PWDRST_DEMO_", "PWDRST_TEST_", "PWDRST_BENCH_")

# Keys whose default is None but whose value is a list or a number.
_TYPES = {
    "LDAP_URL": list,
    "LDAP_TIMEOUT": float,
    "MAIL_TIMEOUT": float,
    "TRUSTED_HOSTS": list,
    "POST_CHANGE_TIMEOUT": float,
    "METRICS_TOKEN": str,
}

REQUIRED = (
    "SECRET_KEY",
    "PUBLIC_URL",
    "LDAP_URL",
    "LDAP_BIND_DN",
    "LDAP_BASE_DN",
    "LDAP_RECOVERY_ATTRIBUTE",
    "SUPPORT_EMAIL",
    "MAIL_DEFAULT_SENDER",
)


class ConfigError(click.ClickException):
    """A setting is missing or invalid; the message names it.

    A ClickException, so that `flask --app pwdrst ...` prints the sentence instead of a traceback.
    """


def defaults() -> dict:
    """Return the documented defaults."""
    return {k: getattr(default_config, k) for k in dir(default_config) if k.isupper()}


def _type_of(key: str, default):
    if key in _TYPES:
        return _TYPES[key]
    if default is None:
        return str
    return type(default)


def parse_value(key: str, raw: str, kind):
    """Turn an environment string into the key's type; raise ConfigError naming the key."""
    try:
        if kind is bool:
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("expected true or false")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is list:
            text = raw.strip()
            if text.startswith("["):
                value = json.loads(text)
                if not isinstance(value, list):
                    raise ValueError("expected a JSON array")
                return value
            return [part.strip() for part in text.split(",") if part.strip()]
        return raw
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}{key} is invalid: {exc}") from None


def from_environment(environ, known) -> dict:
    """Return the settings given as PWDRST_* variables; an unknown name is an error (a typo)."""
    values = {}
    for name, raw in environ.items():
        if not name.startswith(PREFIX) or name.startswith(TOOL_PREFIXES):
            continue
        key = name[len(PREFIX) :]
        if key not in known:
            raise ConfigError(f"{name} is not a pwdrst setting (see pwdrst/default_config.py)")
        values[key] = parse_value(key, raw, _type_of(key, known[key]))
    return values


def load(app, test_config=None) -> None:
    """Fill app.config: defaults, then PWDRST_CONFIG's file, then PWDRST_* variables, then test_config."""
    _fill(app.config, os.environ, test_config)


def _fill(config, environ, test_config=None) -> None:
    known = defaults()
    config.update(known)
    site_file = environ.get(PREFIX + "CONFIG")
    if site_file:
        try:
            config.from_pyfile(os.path.abspath(site_file))
        except OSError as exc:
            raise ConfigError(f"PWDRST_CONFIG names a file that cannot be read: {exc.strerror}") from None
    config.update(from_environment(environ, known))
    if test_config:
        config.update(test_config)
    validate(config)
    derive(config)


def validate(config) -> None:
    """Raise ConfigError naming the first missing or invalid setting."""
    for key in REQUIRED:
        if config.get(key) in (None, "", []):
            raise ConfigError(f"{key} is not set")
    if len(str(config["SECRET_KEY"])) < 32:
        raise ConfigError("SECRET_KEY is too short: use at least 32 random characters")
    url = urlsplit(str(config["PUBLIC_URL"]))
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
        raise ConfigError("PUBLIC_URL must be an http:// or https:// URL without query or fragment")
    try:
        parse_servers(config["LDAP_URL"])
    except ValueError as exc:
        raise ConfigError(f"LDAP_URL is invalid: {exc}") from None
    for key in ("LDAP_BASE_DN", "LDAP_BIND_DN", "LDAP_HELPDESK_GROUP", "LDAP_ADMIN_GROUP", "LDAP_PROTECTED_GROUP"):
        if config.get(key) and not is_valid_dn(config[key]):
            raise ConfigError(f"{key} is not a valid DN: {config[key]!r}")
    if config["LDAP_BIND_PASSWORD_FILE"]:
        try:
            with open(config["LDAP_BIND_PASSWORD_FILE"], encoding="utf-8") as fh:
                config["LDAP_BIND_PASSWORD"] = fh.read().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"LDAP_BIND_PASSWORD_FILE cannot be read: {exc.strerror}") from None
    if not config["LDAP_BIND_PASSWORD"]:
        raise ConfigError("LDAP_BIND_PASSWORD (or LDAP_BIND_PASSWORD_FILE) is not set")
    if config["LDAP_FLAVOUR"] not in ("openldap", "ad"):
        raise ConfigError("LDAP_FLAVOUR must be openldap or ad")
    if not config["LDAP_LOGIN_ATTRIBUTES"]:
        raise ConfigError("LDAP_LOGIN_ATTRIBUTES must name at least the login attribute")
    for key in (
        "LDAP_TIMEOUT",
        "MAIL_TIMEOUT",
        "POST_CHANGE_TIMEOUT",
        "SESSION_IDLE_TIMEOUT",
        "SESSION_MAX_AGE",
        "RESET_LINK_MAX_AGE",
        "RECOVERY_LINK_MAX_AGE",
    ):
        try:
            if float(config[key]) <= 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a positive number of seconds") from None
    if config["SESSION_STORAGE_URI"] and urlsplit(str(config["SESSION_STORAGE_URI"])).scheme not in ("redis", "rediss"):
        raise ConfigError("SESSION_STORAGE_URI must be a redis:// or rediss:// URL (or unset for SESSION_DIRECTORY)")
    if config["SESSION_DIRECTORY"] is not None and not os.path.isabs(str(config["SESSION_DIRECTORY"])):
        raise ConfigError("SESSION_DIRECTORY must be an absolute path")
    if not isinstance(config["MAIL_PORT"], int) or not 0 < config["MAIL_PORT"] < 65536:
        raise ConfigError("MAIL_PORT must be a port number")
    if "@" not in str(config["SUPPORT_EMAIL"]):
        raise ConfigError("SUPPORT_EMAIL must be an e-mail address")
    if not 0 < float(config["HELPDESK_LINK_MAX_AGE"]) <= 86400:
        raise ConfigError("HELPDESK_LINK_MAX_AGE must be between 1 second and 24 hours (86400)")
    if not 0 < float(config["CLI_LINK_MAX_AGE"]) <= float(config["CLI_LINK_MAX_AGE_CAP"]):
        raise ConfigError("CLI_LINK_MAX_AGE must be positive and at most CLI_LINK_MAX_AGE_CAP")
    for key in ("POLICY_MIN_LENGTH", "POLICY_MAX_LENGTH", "POLICY_MIN_SCORE"):
        if not isinstance(config[key], int) or isinstance(config[key], bool):
            raise ConfigError(f"{key} must be a whole number")
    if config["POLICY_MAX_LENGTH"] < 64:
        raise ConfigError("POLICY_MAX_LENGTH may not be below 64")
    if not 1 <= config["POLICY_MIN_LENGTH"] <= config["POLICY_MAX_LENGTH"]:
        raise ConfigError("POLICY_MIN_LENGTH must be between 1 and POLICY_MAX_LENGTH")
    if not 0 <= config["POLICY_MIN_SCORE"] <= 4:
        raise ConfigError("POLICY_MIN_SCORE must be 0 to 4")
    if config["POLICY_BLOCKLIST_FILE"] and not os.access(config["POLICY_BLOCKLIST_FILE"], os.R_OK):
        raise ConfigError("POLICY_BLOCKLIST_FILE cannot be read")
    if config["POST_CHANGE_COMMAND"]:
        command = config["POST_CHANGE_COMMAND"]
        words = shlex.split(command) if isinstance(command, str) else list(command)
        if not words or not shutil.which(words[0]):
            raise ConfigError(f"POST_CHANGE_COMMAND names a program that cannot be found: {words[:1]}")
    if config["POLICY_BREACH_FILTER"]:
        try:
            breach.inspect(config["POLICY_BREACH_FILTER"])
        except breach.FilterFileError as exc:
            raise ConfigError(f"POLICY_BREACH_FILTER: {exc}") from None
    if not config["LANGUAGES"] or any(lang not in ("pl", "en") for lang in config["LANGUAGES"]):
        raise ConfigError("LANGUAGES must list pl and/or en")
    validate_theme(config)


THEME_FILES = {
    "ORGANISATION_LOGO_FILE": (".svg", ".png", ".jpg", ".jpeg"),
    "ORGANISATION_FAVICON_FILE": (".svg", ".png", ".ico"),
}


def contrast_with_white(colour: str) -> float:
    """Return the WCAG contrast ratio of white text on a #rrggbb colour."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 1.05 / (luminance + 0.05)


def validate_theme(config) -> None:
    """Raise ConfigError naming the first unusable theme setting."""
    colour = config["ORGANISATION_COLOUR"]
    if not isinstance(colour, str) or not re.fullmatch(r"#[0-9a-fA-F]{6}", colour):
        raise ConfigError(f"ORGANISATION_COLOUR must be a colour written #rrggbb, not {colour!r}")
    ratio = contrast_with_white(colour)
    if ratio < 4.5:
        raise ConfigError(
            f"ORGANISATION_COLOUR {colour} is too light: white text on it has a contrast of {ratio:.2f}:1, "
            "and WCAG asks at least 4.5:1. Choose a darker shade."
        )
    for key, suffixes in THEME_FILES.items():
        path = config[key]
        if path and (not os.path.isfile(path) or not os.access(path, os.R_OK)):
            raise ConfigError(f"{key} cannot be read: {path}")
        if path and not path.lower().endswith(suffixes):
            raise ConfigError(f"{key} must be one of {', '.join(suffixes)}: {path}")
    links = config["ORGANISATION_FOOTER_LINKS"]
    for link in links if isinstance(links, list | tuple) else [links]:
        if not isinstance(link, list | tuple) or len(link) != 2 or not _is_label(link[0], config["LANGUAGES"]):
            raise ConfigError(
                "ORGANISATION_FOOTER_LINKS must be a list of [label, URL] pairs, a label being a text or "
                f'{{"pl": text, "en": text}} in LANGUAGES, not {link!r}'
            )
        if not isinstance(link[1], str) or not link[1]:
            raise ConfigError(f"ORGANISATION_FOOTER_LINKS: {link!r} has no URL")
        if urlsplit(link[1]).scheme not in ("http", "https", "mailto"):
            raise ConfigError(f"ORGANISATION_FOOTER_LINKS: {link[1]!r} is not an http, https or mailto URL")
    if config["THEME_FOLDER"] and not os.path.isdir(config["THEME_FOLDER"]):
        raise ConfigError(f"THEME_FOLDER is not a folder: {config['THEME_FOLDER']}")
    try:
        if not config["REMINDER_DAYS"] or any(int(d) < 1 for d in config["REMINDER_DAYS"]):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError("REMINDER_DAYS must list whole numbers of days above 0, such as [14, 7, 1]") from None
    try:
        allowed_networks(config["METRICS_ALLOW"])
    except ValueError as exc:
        raise ConfigError(f"METRICS_ALLOW is invalid: {exc}") from None


def _is_label(label, languages) -> bool:
    """Whether a configured label is a non-empty text, or {language: non-empty text} in LANGUAGES."""
    if isinstance(label, str):
        return bool(label)
    return (
        isinstance(label, dict)
        and bool(label)
        and all(code in languages and isinstance(text, str) and text for code, text in label.items())
    )


def derive(config) -> None:
    """Set Flask's own keys from ours."""
    https = urlsplit(config["PUBLIC_URL"]).scheme == "https"
    if isinstance(config["LDAP_URL"], str):
        config["LDAP_URL"] = config["LDAP_URL"].replace(",", " ").split()
    config["PUBLIC_URL"] = config["PUBLIC_URL"].rstrip("/")
    # Flask sets its own name ("session") before ours is read: replace that one, keep a site's own.
    if config.get("SESSION_COOKIE_NAME") in (None, "session"):
        config["SESSION_COOKIE_NAME"] = "pwdrst_session"
    # The cookie goes only to pwdrst's own path on a shared host (a test may serve at / instead).
    config["SESSION_COOKIE_PATH"] = config.get("SESSION_COOKIE_PATH") or urlsplit(config["PUBLIC_URL"]).path or "/"
    config["SESSION_COOKIE_SECURE"] = https
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    config["PERMANENT_SESSION_LIFETIME"] = int(config["SESSION_IDLE_TIMEOUT"])
    config["SESSION_REFRESH_EACH_REQUEST"] = True
    config["BABEL_DEFAULT_LOCALE"] = config["LANGUAGES"][0]
    config["BABEL_TRANSLATION_DIRECTORIES"] = "translations"
    config["BABEL_DEFAULT_TIMEZONE"] = config["TIMEZONE"]
    config["WTF_CSRF_TIME_LIMIT"] = None  # the token lives as long as the session
    config["MAIL_SUPPRESS_SEND"] = False
    if not config["TRUSTED_HOSTS"]:
        config["TRUSTED_HOSTS"] = [urlsplit(config["PUBLIC_URL"]).hostname]
    # When shared storage (Redis) fails, keep serving with per-process limits, and say so in the log.
    config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)


def load_settings(environ=None):
    """Return the settings as the app would load them (defaults, site file, PWDRST_*), validated.

    For tools that look at the settings before any app exists, such as gunicorn.conf.py.
    """
    settings = Config(os.getcwd())
    _fill(settings, os.environ if environ is None else environ)
    return settings


def worker_problem(config, workers: int) -> str | None:
    """Return why these settings cannot serve several worker processes, or None if they can."""
    if workers > 1 and str(config["RATELIMIT_STORAGE_URI"]).startswith("memory://"):
        return (
            f"RATELIMIT_STORAGE_URI is memory://, so each of the {workers} workers would keep its own "
            "rate limit counters and every limit would be multiplied: set PWDRST_RATELIMIT_STORAGE_URI="
            "redis://... (see the README's production recipe), or run one worker (PWDRST_GUNICORN_WORKERS=1)"
        )
    return None
