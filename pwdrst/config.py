"""Load the settings in layers and check them before the app starts."""

import json
import os
import shlex
import shutil
from urllib.parse import urlsplit

import click

from pwdrst import default_config
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
    known = defaults()
    app.config.update(known)
    site_file = os.environ.get(PREFIX + "CONFIG")
    if site_file:
        try:
            app.config.from_pyfile(os.path.abspath(site_file))
        except OSError as exc:
            raise ConfigError(f"PWDRST_CONFIG names a file that cannot be read: {exc.strerror}") from None
    app.config.update(from_environment(os.environ, known))
    if test_config:
        app.config.update(test_config)
    validate(app.config)
    derive(app.config)


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
    seconds = ("LDAP_TIMEOUT", "MAIL_TIMEOUT", "POST_CHANGE_TIMEOUT", "SESSION_IDLE_TIMEOUT")
    for key in (*seconds, "RESET_LINK_MAX_AGE", "RECOVERY_LINK_MAX_AGE"):
        try:
            if float(config[key]) <= 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a positive number of seconds") from None
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
    if not config["LANGUAGES"] or any(lang not in ("pl", "en") for lang in config["LANGUAGES"]):
        raise ConfigError("LANGUAGES must list pl and/or en")
    try:
        if not config["REMINDER_DAYS"] or any(int(d) < 1 for d in config["REMINDER_DAYS"]):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError("REMINDER_DAYS must list whole numbers of days above 0, such as [14, 7, 1]") from None
    try:
        allowed_networks(config["METRICS_ALLOW"])
    except ValueError as exc:
        raise ConfigError(f"METRICS_ALLOW is invalid: {exc}") from None


def derive(config) -> None:
    """Set Flask's own keys from ours."""
    https = urlsplit(config["PUBLIC_URL"]).scheme == "https"
    if isinstance(config["LDAP_URL"], str):
        config["LDAP_URL"] = config["LDAP_URL"].replace(",", " ").split()
    config["PUBLIC_URL"] = config["PUBLIC_URL"].rstrip("/")
    config.setdefault("SESSION_COOKIE_NAME", "pwdrst_session")
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
