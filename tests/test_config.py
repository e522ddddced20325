"""Settings: layers, parsing, validation that names the key, and check-config."""

import os
import subprocess
import sys

import pytest

from pwdrst import create_app, sandbox
from pwdrst.config import ConfigError, defaults, from_environment
from pwdrst.sandbox import free_port
from tests.conftest import base_config


@pytest.mark.parametrize(
    "key",
    ["SECRET_KEY", "PUBLIC_URL", "LDAP_URL", "LDAP_BIND_DN", "LDAP_BASE_DN", "SUPPORT_EMAIL", "MAIL_DEFAULT_SENDER"],
)
def test_missing_setting_stops_start_up_naming_it(slapd, smtp, key):
    config = base_config(slapd, smtp)
    config[key] = None
    with pytest.raises(ConfigError, match=key):
        create_app(config)


@pytest.mark.parametrize(
    "key, value",
    [
        ("SECRET_KEY", "short"),
        ("PUBLIC_URL", "ftp://x"),
        ("PUBLIC_URL", "https://x.example/?q=1"),
        ("LDAP_URL", ["http://ldap.example"]),
        ("LDAP_URL", ["ldap://ldap.example:port"]),
        ("LDAP_BASE_DN", "not a dn"),
        ("LDAP_TIMEOUT", 0),
        ("LDAP_FLAVOUR", "novell"),
        ("MAIL_PORT", 70000),
        ("SUPPORT_EMAIL", "helpdesk"),
        ("LDAP_BIND_PASSWORD_FILE", "/nonexistent/secret"),
    ],
)
def test_invalid_setting_stops_start_up_naming_it(slapd, smtp, key, value):
    with pytest.raises(ConfigError, match=key):
        create_app(base_config(slapd, smtp, **{key: value}))


def test_ldap_url_with_a_trailing_slash_is_accepted(slapd, smtp):
    app = create_app(base_config(slapd, smtp, LDAP_URL=[slapd.url + "/"]))
    assert app.test_client().get("/healthz").status_code == 200


def test_bind_password_may_come_from_a_file(slapd, smtp, tmp_path):
    secret = tmp_path / "bind-password"
    secret.write_text(sandbox.SERVICE_PASSWORD + "\n")
    app = create_app(base_config(slapd, smtp, LDAP_BIND_PASSWORD=None, LDAP_BIND_PASSWORD_FILE=str(secret)))
    assert app.test_client().get("/healthz").status_code == 200


def test_environment_lists_as_json_or_comma_separated():
    known = defaults()
    env = {
        "PWDRST_LDAP_URL": "ldap://a.example, ldap://b.example",
        "PWDRST_LDAP_LOGIN_ATTRIBUTES": '["uid", "mail", "mailAlternateAddress"]',
        "PWDRST_LDAP_TIMEOUT": "2.5",
        "PWDRST_LDAP_START_TLS": "true",
        "PWDRST_LDAP_BIND_PASSWORD": "12345",
        "OTHER": "ignored",
    }
    values = from_environment(env, known)
    assert values["LDAP_URL"] == ["ldap://a.example", "ldap://b.example"]
    assert values["LDAP_LOGIN_ATTRIBUTES"] == ["uid", "mail", "mailAlternateAddress"]
    assert values["LDAP_TIMEOUT"] == 2.5
    assert values["LDAP_START_TLS"] is True
    assert values["LDAP_BIND_PASSWORD"] == "12345"  # stays a string, not a number


def test_unknown_environment_setting_is_named():
    with pytest.raises(ConfigError, match="PWDRST_LDAP_URI"):
        from_environment({"PWDRST_LDAP_URI": "ldap://x"}, defaults())


def test_invalid_environment_value_is_named():
    with pytest.raises(ConfigError, match="PWDRST_LDAP_TIMEOUT"):
        from_environment({"PWDRST_LDAP_TIMEOUT": "soon"}, defaults())


def environment_for(slapd, smtp, **extra):
    """Return an environment holding the test settings as PWDRST_* variables, and extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PWDRST_")}
    settings = base_config(slapd, smtp)
    # Flask's own keys, not pwdrst settings: PWDRST_* would name unknown settings.
    del settings["TESTING"], settings["SESSION_COOKIE_PATH"]
    env.update(sandbox.as_environment(settings))
    env.update(extra)
    return env


def flask_cli(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "pwdrst", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_site_file_is_read_before_the_environment(slapd, smtp, tmp_path):
    site = tmp_path / "site.py"
    site.write_text('ORGANISATION_NAME = "Z pliku"\nSUPPORT_PHONE = "+48 12 000 00 00"\n')
    env = environment_for(slapd, smtp, PWDRST_CONFIG=str(site), PWDRST_ORGANISATION_NAME="Ze zmiennej")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pwdrst import create_app; a = create_app(); "
            "print(a.config['ORGANISATION_NAME'], '|', a.config['SUPPORT_PHONE'])",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "Ze zmiennej | +48 12 000 00 00"


def test_check_config_passes_against_a_working_directory_and_smtp(slapd, smtp):
    result = flask_cli(environment_for(slapd, smtp), "check-config")
    assert result.returncode == 0, result.stderr
    assert "directory: ok" in result.stdout
    assert "mail: ok" in result.stdout


def test_check_config_names_a_wrong_bind_password(slapd, smtp):
    result = flask_cli(environment_for(slapd, smtp, PWDRST_LDAP_BIND_PASSWORD="wrong-secret"), "check-config")
    assert result.returncode != 0
    assert "wrong LDAP_BIND_DN or LDAP_BIND_PASSWORD" in result.stderr
    assert "wrong-secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_check_config_names_an_unreachable_server(slapd, smtp):
    result = flask_cli(environment_for(slapd, smtp, PWDRST_LDAP_URL=f"ldap://127.0.0.1:{free_port()}"), "check-config")
    assert result.returncode != 0
    assert "no server of LDAP_URL answers" in result.stderr


def test_check_config_names_an_unknown_base_dn(slapd, smtp):
    result = flask_cli(environment_for(slapd, smtp, PWDRST_LDAP_BASE_DN="dc=nowhere,dc=example"), "check-config")
    assert result.returncode != 0
    assert "base DN dc=nowhere,dc=example does not exist" in result.stderr


def test_check_config_names_an_unreachable_smtp_server(slapd, smtp):
    result = flask_cli(environment_for(slapd, smtp, PWDRST_MAIL_PORT=str(free_port())), "check-config")
    assert result.returncode != 0
    assert "SMTP server" in result.stderr and "unreachable" in result.stderr


def test_check_config_names_a_missing_setting(slapd, smtp):
    env = environment_for(slapd, smtp)
    del env["PWDRST_SECRET_KEY"]
    result = flask_cli(env, "check-config")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr
