"""Fixtures: a real slapd and a real SMTP server for the session, and the app wired to them."""

import itertools
import json
import os
import re
import sys
import tempfile
import threading

import pytest

from pwdrst import create_app, sandbox
from pwdrst.sandbox import Person, Slapd, SmtpSink

_serial = itertools.count(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def slapd():
    """A private OpenLDAP server with the sample people, for the whole test session."""
    server = Slapd()
    server.start()
    yield server
    server.close()


@pytest.fixture
def own_slapd():
    """A private slapd of the test's own, which it may stop and start."""
    server = Slapd()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def smtp_server():
    server = SmtpSink().start()
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_server):
    """The real SMTP server, with the messages of earlier tests forgotten."""
    if not smtp_server.running:
        smtp_server.start()
    smtp_server.clear()
    yield smtp_server
    if not smtp_server.running:
        smtp_server.start()


def base_config(slapd, smtp_server, **overrides):
    """Return the settings of an app wired to the test servers."""
    config = {
        **sandbox.app_settings(slapd.url, smtp_server.port, "https://pwdrst.uni.example/pwdrst"),
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-0123456789abcdef0123456789",
        "LDAP_TIMEOUT": 2,
        "MAIL_RETRY_DELAYS": [0.2, 0.5, 1, 1, 2, 2, 4],
        "AUDIT_LOG": "-",
        # The test client speaks as "localhost"; the live server as 127.0.0.1 (its PUBLIC_URL).
        "TRUSTED_HOSTS": ["pwdrst.uni.example", "localhost", "127.0.0.1"],
        # The test client serves the app at /, not at PUBLIC_URL's /pwdrst: the cookie must reach it.
        "SESSION_COOKIE_PATH": "/",
    }
    config.update(overrides)
    return config


@pytest.fixture
def config_overrides():
    """Settings a test module or test changes (override this fixture, or update the dict)."""
    return {}


@pytest.fixture
def app(slapd, smtp, config_overrides):
    app = create_app(base_config(slapd, smtp, **config_overrides))
    yield app
    app.extensions["pwdrst.mail"].drain(5)
    app.extensions["pwdrst.directory"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_person(slapd):
    """Create a fresh person in the directory, so a test may change its password freely."""

    def make(given="Ewa", surname="Testowa", password=None, recovery=True, groups=(), extra=None, mail=None):
        n = next(_serial)
        uid = f"{given.lower()[:1]}{surname.lower()}{n}".encode("ascii", "ignore").decode()
        local = f"{given.lower()}.{surname.lower()}{n}".encode("ascii", "ignore").decode()
        person = Person(
            uid=uid,
            given_name=given,
            surname=surname,
            password=password or f"Bardzo-dlugie-haslo-testowe-{n}",
            mail=tuple(mail or (f"{local}@uni.example", f"{uid}@uni.example", f"{local}@student.uni.example")),
            recovery=(f"{local}@private.example",) if recovery else (),
            groups=tuple(groups),
            extra=extra or {},
        )
        return slapd.add_person(person)

    return make


CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf-token" content="([^"]+)"')


def csrf_token(html: str) -> str:
    """Return the CSRF token a page carries."""
    match = CSRF_RE.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1) or match.group(2)


# -- a live server and a real browser


SCREENSHOTS = os.environ.get("PWDRST_TEST_SCREENSHOTS") or os.path.join(
    os.path.dirname(__file__), "..", "test-artifacts", "screenshots"
)


class LiveServer:
    """The app served over real HTTP on a loopback port, in a thread."""

    def __init__(self, app, port):
        from werkzeug.serving import make_server

        self.app = app
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def live_server(slapd, smtp, config_overrides):
    port = sandbox.free_port()
    app = create_app(base_config(slapd, smtp, PUBLIC_URL=f"http://127.0.0.1:{port}", **config_overrides))
    server = LiveServer(app, port)
    yield server
    server.stop()
    app.extensions["pwdrst.mail"].drain(5)
    app.extensions["pwdrst.directory"].close()


def make_browser(language="pl"):
    """Start Debian's headless Chromium through chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,900",
        f"--user-data-dir={tempfile.mkdtemp(prefix='pwdrst-chromium-')}",
    ):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)


@pytest.fixture
def browser():
    driver = make_browser()
    yield driver
    driver.quit()


@pytest.fixture
def screenshot(request):
    """Save a screenshot of a browser under test-artifacts/screenshots/<test>-<name>.png."""
    os.makedirs(SCREENSHOTS, exist_ok=True)

    def take(driver, name):
        path = os.path.join(SCREENSHOTS, f"{request.node.name}-{name}.png")
        driver.save_screenshot(path)
        return path

    return take


def pytest_terminal_summary(terminalreporter):
    hostile = sys.modules.get("tests.test_hostile")
    if hostile is not None and hostile.CASES:
        cases = ", ".join(f"{name} {count}" for name, count in sorted(hostile.CASES.items()))
        terminalreporter.write_line(f"hostile input: {sum(hostile.CASES.values())} cases ({cases})")
    if os.path.isdir(SCREENSHOTS) and os.listdir(SCREENSHOTS):
        terminalreporter.write_line(f"browser screenshots: {os.path.abspath(SCREENSHOTS)}")


# -- helpers for driving forms and reading mail

LINK_RE = re.compile(r"https?://\S+/(?:reset|recovery)/[A-Za-z0-9_\-.]+")


def submit(client, url, data, form_url=None, **kwargs):
    """GET the form (for its CSRF token and cookie, as a browser would), then POST it."""
    page = client.get(form_url or url, **kwargs)
    return client.post(url, data={"csrf_token": csrf_token(page.get_data(as_text=True)), **data}, **kwargs)


def mail_text(message) -> str:
    """Return the plain-text part of a captured mail."""
    return message.get_body(preferencelist=("plain",)).get_content()


def mail_link(message) -> str:
    """Return the link a captured mail carries."""
    match = LINK_RE.search(mail_text(message))
    assert match, "the mail has no link"
    return match.group(0)


def audit_events(caplog, event: str) -> list[dict]:
    """Return the audit lines of one event that a test's log capture saw."""
    records = (r for r in caplog.records if r.name == "pwdrst.audit")
    return [line for line in (json.loads(r.getMessage()) for r in records) if line["event"] == event]


def link_path(link: str, public_url: str = "https://pwdrst.uni.example/pwdrst") -> str:
    """Turn a link built from PUBLIC_URL into a path for the test client."""
    assert link.startswith(public_url + "/"), link
    return link[len(public_url) :]


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the golden files of tests/test_mail_messages.py from what the code renders now",
    )


# -- the directory's other clients: Dovecot IMAP and Apache httpd sign-on (pwdrst.sandbox_clients)


def start_client(server):
    """Start a sandbox client server; fail (never skip) with the way out if its package is missing."""
    from pwdrst.sandbox_clients import MissingPackage

    try:
        return server.start()
    except MissingPackage as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def dovecot(slapd):
    """Dovecot IMAP binding to the session's slapd as the person, authentication cache off."""
    from pwdrst.sandbox_clients import Dovecot

    server = start_client(Dovecot(slapd))
    yield server
    server.close()


@pytest.fixture(scope="session")
def apache_sso(slapd):
    """Apache httpd guarding /sso/ with LDAP Basic authentication against the session's slapd, caches off."""
    from pwdrst.sandbox_clients import ApacheLdap

    server = start_client(ApacheLdap(slapd))
    yield server
    server.close()


# -- end of the directory's other clients

# -- a Samba AD domain controller (LDAP_FLAVOUR=ad); the work is in pwdrst/sandbox_samba.py


@pytest.fixture(scope="session")
def samba():
    """A private Samba AD domain controller with the sample people, for the whole test session.

    It listens on 127.0.0.1:389 and :636, ports that are fixed, so one runs on a machine at a time.
    """
    from pwdrst.sandbox_samba import SambaDC, SambaNotInstalled

    dc = SambaDC()
    try:
        dc.start()
    except SambaNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    yield dc
    dc.close()
