"""Command-line tools for administrators: `flask --app pwdrst <command>`."""

import smtplib

import click
from flask import current_app
from flask.cli import with_appcontext

from pwdrst.directory import DirectoryError, directory


def init_app(app) -> None:
    """Register the commands."""
    app.cli.add_command(check_config)


@click.command("check-config")
@with_appcontext
def check_config():
    """Check the settings, the directory (service bind, base DN) and the SMTP server."""
    # The settings were already validated when the app was created: an error stops before here.
    click.echo("settings: ok")
    try:
        directory.check_service()
    except DirectoryError as exc:
        raise click.ClickException(f"directory: {explain_directory_error(exc)}") from None
    click.echo(f"directory: ok ({current_app.config['LDAP_BASE_DN']} readable by the service account)")
    server, port = current_app.config["MAIL_SERVER"], current_app.config["MAIL_PORT"]
    try:
        with smtplib.SMTP(server, port, timeout=float(current_app.config["MAIL_TIMEOUT"])) as smtp:
            smtp.noop()
    except (OSError, smtplib.SMTPException) as exc:
        raise click.ClickException(f"mail: the SMTP server {server}:{port} is unreachable ({exc})") from None
    click.echo(f"mail: ok ({server}:{port} answers)")


def explain_directory_error(exc: DirectoryError) -> str:
    """Turn a directory error into a sentence for an administrator."""
    text = str(exc)
    if "invalidCredentials" in text:
        return "the service account cannot bind: wrong LDAP_BIND_DN or LDAP_BIND_PASSWORD"
    if "no directory server answered" in text:
        return f"no server of LDAP_URL answers ({', '.join(current_app.config['LDAP_URL'])})"
    return text
