"""Settings: layers, parsing, validation that names the key, and check-config."""

import subprocess
import sys

import pytest

from pwdrst import create_app, sandbox
from pwdrst.config import ConfigError, defaults, from_environment
from pwdrst.sandbox import free_port


@pytest.mark.parametrize(
    "key",
    ["SECRET_KEY", "PUBLIC_URL", "LDAP_URL", "LDAP_BIND_DN", "LDAP_BASE_DN", "SUPPORT_EMAIL", "MAIL_DEFAULT_SENDER"],
)
def test_missing_setting_stops_start_up_naming_it(settings, key):
    with pytest.raises(ConfigError, match=key):
        create_app(settings(**{key: None}))


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
def test_invalid_setting_stops_start_up_naming_it(settings, key, value):
    with pytest.raises(ConfigError, match=key):
        create_app(settings(**{key: value}))


def test_ldap_url_with_a_trailing_slash_is_accepted(slapd, make_app):
    app = make_app(LDAP_URL=[slapd.url + "/"])
    assert app.test_client().get("/healthz").status_code == 200


def test_bind_password_may_come_from_a_file(make_app, tmp_path):
    secret = tmp_path / "bind-password"
    secret.write_text(sandbox.SERVICE_PASSWORD + "\n")
    app = make_app(LDAP_BIND_PASSWORD=None, LDAP_BIND_PASSWORD_FILE=str(secret))
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


def test_site_file_is_read_before_the_environment(settings, environment, tmp_path):
    site = tmp_path / "site.py"
    site.write_text('ORGANISATION_NAME = "Z pliku"\nSUPPORT_PHONE = "+48 12 000 00 00"\n')
    env = environment(settings(), PWDRST_CONFIG=str(site), PWDRST_ORGANISATION_NAME="Ze zmiennej")
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


def test_check_config_passes_against_a_working_directory_and_smtp(flask_cli):
    result = flask_cli("check-config")
    assert result.returncode == 0, result.stderr
    assert "directory: ok" in result.stdout
    assert "mail: ok" in result.stdout


def test_check_config_names_a_wrong_bind_password(flask_cli):
    result = flask_cli("check-config", PWDRST_LDAP_BIND_PASSWORD="wrong-secret")
    assert result.returncode != 0
    assert "wrong LDAP_BIND_DN or LDAP_BIND_PASSWORD" in result.stderr
    assert "wrong-secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_check_config_names_an_unreachable_server(flask_cli):
    result = flask_cli("check-config", PWDRST_LDAP_URL=f"ldap://127.0.0.1:{free_port()}")
    assert result.returncode != 0
    assert "no server of LDAP_URL answers" in result.stderr


def test_check_config_names_an_unknown_base_dn(flask_cli):
    result = flask_cli("check-config", PWDRST_LDAP_BASE_DN="dc=nowhere,dc=example")
    assert result.returncode != 0
    assert "base DN dc=nowhere,dc=example does not exist" in result.stderr


def test_check_config_names_an_unreachable_smtp_server(flask_cli):
    result = flask_cli("check-config", PWDRST_MAIL_PORT=str(free_port()))
    assert result.returncode != 0
    assert "SMTP server" in result.stderr and "unreachable" in result.stderr


def test_check_config_names_a_missing_setting(flask_cli):
    result = flask_cli("check-config", PWDRST_SECRET_KEY=None)  # None: not in the environment
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


# -- the directory's lockout threshold (pwdMaxFailure) against RATELIMIT_LOGIN_ACCOUNT


def test_check_config_reports_the_directory_lockout_threshold(flask_cli):
    result = flask_cli("check-config")
    assert result.returncode == 0, result.stderr
    threshold = sandbox.POLICY_MAX_FAILURE
    assert f"lockout: ok (the directory locks an account after {threshold} failed logins" in result.stdout


def test_login_limit_that_reaches_the_lockout_threshold_refuses_to_start(server_settings, flask_cli):
    limit = f"{sandbox.POLICY_MAX_FAILURE} per 15 minutes"
    with pytest.raises(ConfigError) as refused:
        create_app(server_settings(RATELIMIT_LOGIN_ACCOUNT=limit))
    message = refused.value.message
    assert "RATELIMIT_LOGIN_ACCOUNT allows 5 failed logins" in message
    assert f"after 5 (pwdMaxFailure of {sandbox.DEFAULT_POLICY})" in message
    result = flask_cli("check-config", PWDRST_RATELIMIT_LOGIN_ACCOUNT=limit)
    assert result.returncode != 0
    assert "Set RATELIMIT_LOGIN_ACCOUNT below 5" in result.stderr and "Traceback" not in result.stderr


def test_start_goes_on_when_the_directory_cannot_be_asked_for_its_threshold(server_settings, caplog):
    app = create_app(server_settings(LDAP_URL=[f"ldap://127.0.0.1:{free_port()}"]))
    assert app.config["RATELIMIT_LOGIN_ACCOUNT"]
    assert "could not read the directory's lockout threshold" in caplog.text
