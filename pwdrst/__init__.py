"""pwdrst: self-service password reset for an LDAP directory shared by mail and SSO."""

import os

from flask import Flask
from flask_babel import get_locale
from jinja2 import ChoiceLoader, FileSystemLoader
from werkzeug.middleware.proxy_fix import ProxyFix

from pwdrst import (
    audit,
    cli,
    config,
    directory,
    display,
    errors,
    hooks,
    identity,
    mail,
    passphrase,
    policy,
    ratelimit,
    security,
    sessions,
)
from pwdrst.extensions import babel, csrf, limiter, select_locale

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(test_config=None):
    """Create and configure the application."""
    app = Flask(
        __name__,
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )
    config.load(app, test_config)
    _configure_proxies(app)
    _configure_extensions(app)
    ratelimit.check_lockout_margin(app)
    audit.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    identity.init_app(app)
    _register_blueprints(app)
    _configure_templates(app)
    cli.init_app(app)
    return app


def _configure_proxies(app):
    # Trust X-Forwarded-* only from the configured number of proxies in front of the app.
    count = int(app.config["PROXY_COUNT"])
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count, x_prefix=count)


def _configure_extensions(app):
    babel.init_app(app, locale_selector=select_locale)
    sessions.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    directory.init_app(app)
    mail.init_app(app)
    policy.init_app(app)
    hooks.init_app(app)
    _configure_metrics(app)


def _configure_metrics(app):
    # After the directory and the mail queue, whose operations it observes.
    from pwdrst import metrics

    metrics.init_app(app)


def _configure_templates(app):
    # The site's own templates first, by name; the built-in ones for everything they do not override.
    if app.config["THEME_FOLDER"]:
        app.jinja_env.loader = ChoiceLoader([FileSystemLoader(app.config["THEME_FOLDER"]), app.jinja_env.loader])
    display.init_app(app)
    passphrase.init_app(app)

    @app.context_processor
    def page_globals():
        return {"current_locale": str(get_locale())}


def _register_blueprints(app):
    from pwdrst import account, api, helpdesk, main, reset

    app.register_blueprint(main.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(reset.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(helpdesk.bp)
