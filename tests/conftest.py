"""Fixtures in flaskr's vocabulary (`app`, `client`, `runner`, `auth`) and the real servers behind them.

The servers: a private slapd and an SMTP sink for the whole session (`slapd`, `smtp`), a slapd of a
test's own that it may stop (`own_slapd`), the app over real HTTP (`live_server`) and a headless
Chromium (`browser`). Tests that need no server use `pure_app` (or `settings`), which point at
loopback ports where nothing listens and start nothing.
"""

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future

import ldap3
import pytest

from pwdrst import create_app, sandbox
from pwdrst.sandbox import Person, Slapd, SmtpSink

PUBLIC_URL = "https://pwdrst.uni.example/pwdrst"
NEW_PASSWORD = "Nowe-haslo-z-lasu-nad-rzeka-44"
LINK_RE = re.compile(r"https?://\S+/(?:reset|recovery)/[A-Za-z0-9_\-.]+")
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf-token" content="([^"]+)"')
SCREENSHOTS = os.environ.get("PWDRST_TEST_SCREENSHOTS") or os.path.join(
    os.path.dirname(__file__), "..", "test-artifacts", "screenshots"
)

_serial = itertools.count(1)


@pytest.fixture(scope="session")
def project_root():
    """The directory holding the package, wsgi.py and gunicorn.conf.py."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- servers


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


class Mailbox(SmtpSink):
    """The SMTP sink, with ways to read the mail it captured."""

    @staticmethod
    def text(message) -> str:
        """Return the plain-text part of a mail."""
        return message.get_body(preferencelist=("plain",)).get_content()

    @staticmethod
    def html(message) -> str:
        """Return the HTML part of a mail."""
        return message.get_body(preferencelist=("html",)).get_content()

    def link(self, message) -> str:
        """Return the link a mail carries."""
        match = LINK_RE.search(self.text(message))
        assert match, "the mail has no link"
        return match.group(0)

    def link_path(self, message) -> str:
        """Return the path of the link a mail carries, for the test client."""
        return path_of(self.link(message))

    def wait_for_link(self, to: str, timeout: float = 10.0):
        """Wait for the newest mail to the address `to` that carries a link; return it and the link."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in reversed(self.messages):
                match = LINK_RE.search(self.text(message))
                if to in message["X-Envelope-To"] and match:
                    return message, match.group(0)
            time.sleep(0.05)
        raise AssertionError(f"no mail with a link reached {to} in {timeout} s")

    def delivered(self, *apps) -> list:
        """Deliver the mail the apps still hold, then return every message received.

        After the apps' queues are drained nothing more can arrive, so an assertion that a mail was
        not sent cannot pass merely by looking too early.
        """
        for app in apps:
            assert app.extensions["pwdrst.mail"].drain(10), "some mail could not be delivered"
        return list(self.messages)


@pytest.fixture(scope="session")
def smtp_server():
    """The SMTP sink for the whole session (tests use `smtp`)."""
    server = Mailbox().start()
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


# -- settings and apps


def _settings(ldap_url: str, smtp_port: int, overrides: dict) -> dict:
    config = {
        **sandbox.app_settings(ldap_url, smtp_port, PUBLIC_URL),
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


@pytest.fixture(scope="session")
def settings():
    """Return settings(**overrides): the test settings, with a directory and SMTP server where nothing listens."""
    ldap_url, smtp_port = f"ldap://127.0.0.1:{sandbox.free_port()}", sandbox.free_port()

    def make(**overrides) -> dict:
        return _settings(ldap_url, smtp_port, overrides)

    return make


@pytest.fixture(scope="session")
def server_settings(slapd, smtp_server):
    """Return server_settings(**overrides): the test settings wired to the test slapd and SMTP server."""

    def make(**overrides) -> dict:
        return _settings(slapd.url, smtp_server.port, overrides)

    return make


@pytest.fixture(scope="session")
def environment():
    """Return environment(settings, **extra): os.environ without PWDRST_*, then settings as PWDRST_*, then extra."""

    def make(settings: dict, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PWDRST_")}
        # Flask's own keys are not pwdrst settings: as PWDRST_* they would be refused as unknown.
        flask_keys = ("TESTING", "SESSION_COOKIE_PATH")
        env.update(sandbox.as_environment({k: v for k, v in settings.items() if k not in flask_keys}))
        env.update(extra)
        return env

    return make


def _close(app) -> None:
    app.extensions["pwdrst.mail"].drain(5)
    app.extensions["pwdrst.directory"].close()


@pytest.fixture
def make_app(server_settings, smtp):
    """Return make_app(**overrides): an app wired to the test servers with other settings, closed after the test."""
    made = []

    def make(**overrides):
        made.append(create_app(server_settings(**overrides)))
        return made[-1]

    yield make
    for app in made:
        _close(app)


@pytest.fixture
def config_overrides():
    """Settings a test module or test changes (override this fixture, or parametrize it)."""
    return {}


@pytest.fixture
def app(make_app, config_overrides):
    """The app wired to the test servers, with the test's config_overrides."""
    return make_app(**config_overrides)


@pytest.fixture
def pure_app(settings):
    """An app whose directory and SMTP server are loopback ports where nothing listens: it starts no server."""
    app = create_app(settings())
    yield app
    app.extensions["pwdrst.directory"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# -- people and the directory


@pytest.fixture
def make_person(slapd):
    """Return make_person(...): a fresh person in the directory, whose password a test may change freely."""

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


@pytest.fixture(scope="session")
def can_bind(slapd):
    """Return can_bind(dn, password): whether a plain ldap3 bind, outside the code under test, succeeds."""

    def bind(dn: str, password: str | bytes) -> bool:
        secret = password.encode() if isinstance(password, str) else password
        conn = ldap3.Connection(ldap3.Server(slapd.url, get_info=ldap3.NONE), dn, secret, raise_exceptions=False)
        try:
            return conn.bind()
        finally:
            conn.unbind()

    return bind


@pytest.fixture(scope="session")
def failure_count(slapd):
    """Return failure_count(dn): how many failed binds the directory holds for an entry (pwdFailureTime)."""

    def count(dn) -> int:
        conn = ldap3.Connection(ldap3.Server(slapd.url), sandbox.ADMIN_DN, sandbox.ADMIN_PASSWORD, auto_bind=True)
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["pwdFailureTime"])
        found = len(conn.entries[0].pwdFailureTime.values) if conn.entries else 0
        conn.unbind()
        return found

    return count


@pytest.fixture(scope="session")
def new_password():
    """A password every rule accepts, to set in a test."""
    return NEW_PASSWORD


# -- forms, sessions and the reset flow


@pytest.fixture
def searches(monkeypatch):
    """The base DNs of the directory searches (Directory._search), in order, as they happen."""
    from pwdrst.directory import Directory

    calls = []
    real = Directory._search

    def counting(self, *args, **kwargs):
        calls.append(args[0])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Directory, "_search", counting)
    return calls


@pytest.fixture(scope="session")
def csrf_token():
    """Return csrf_token(page): the CSRF token a page (a response, or its HTML) carries."""

    def find(page) -> str:
        html = page if isinstance(page, str) else page.get_data(as_text=True)
        match = CSRF_RE.search(html)
        assert match, "the page has no CSRF token"
        return match.group(1) or match.group(2)

    return find


@pytest.fixture(scope="session")
def submit(csrf_token):
    """Return submit(client, url, data, form_url=None, **kwargs): GET the form (as a browser would), then POST it."""

    def post(client, url, data, form_url=None, **kwargs):
        page = client.get(form_url or url, **kwargs)
        return client.post(url, data={"csrf_token": csrf_token(page), **data}, **kwargs)

    return post


class AuthActions:
    """Log in and out through the forms, as a person does."""

    def __init__(self, client, submit):
        self._client = client
        self._submit = submit

    def login(self, identifier, password, **kwargs):
        return self._submit(self._client, "/login", {"identifier": identifier, "password": password}, **kwargs)

    def logout(self):
        return self._submit(self._client, "/logout", {}, form_url="/password")

    def on(self, client) -> "AuthActions":
        """The same actions for another client."""
        return AuthActions(client, self._submit)


@pytest.fixture
def auth(client, submit):
    """auth.login(identifier, password), auth.logout(), for `client` (auth.on(other) for another)."""
    return AuthActions(client, submit)


def path_of(link: str) -> str:
    """Turn a link built from PUBLIC_URL into a path for the test client."""
    assert link.startswith(PUBLIC_URL + "/"), link
    return link[len(PUBLIC_URL) :]


class ResetFlow:
    """The forgot-password flow as a person goes through it: request a link, open it, set a password."""

    def __init__(self, client, smtp, submit, new_password):
        self.client = client
        self.smtp = smtp
        self.submit = submit
        self.new_password = new_password

    def request(self, identifier, client=None, **kwargs):
        """Submit the request form for an identifier."""
        return self.submit(client or self.client, "/reset", {"identifier": identifier}, **kwargs)

    def link(self, identifier, **kwargs) -> str:
        """Request a link for an identifier; return the link the next mail carries."""
        count = len(self.smtp.messages) + 1
        self.request(identifier, **kwargs)
        return self.smtp.link(self.smtp.wait_for(count)[-1])

    def open(self, link, client=None):
        """Open a link (any link built from PUBLIC_URL) with the test client."""
        return (client or self.client).get(path_of(link))

    def set_password(self, link, password=None, confirm=None, client=None):
        """Open a link, then submit the new password on the page it leads to."""
        client = client or self.client
        opened = self.open(link, client)
        if opened.status_code != 303:
            return opened
        assert opened.headers["Location"] == "/reset/new"
        password = password or self.new_password
        return self.submit(client, "/reset/new", {"new_password": password, "confirm": confirm or password})


@pytest.fixture
def reset_flow(client, smtp, submit, new_password):
    """reset_flow.request(identifier), .link(identifier), .open(link), .set_password(link, password)."""
    return ResetFlow(client, smtp, submit, new_password)


@pytest.fixture
def audit(caplog):
    """Return audit(event): the audit lines of one event that the test's log capture saw."""

    def events(event: str) -> list[dict]:
        records = (r for r in caplog.records if r.name == "pwdrst.audit")
        return [line for line in (json.loads(r.getMessage()) for r in records) if line["event"] == event]

    return events


@pytest.fixture(scope="session")
def comparable():
    """Return comparable(response): what two answers must share to be indistinguishable.

    The status, the headers but the cookie, date and length, and the body without its CSRF tokens.
    """

    def strip(response):
        body = re.sub(r'(csrf[-_]token"[^>]*(?:value|content)=")[^"]+', r"\1", response.get_data(as_text=True))
        headers = {k: v for k, v in response.headers.items() if k not in ("Set-Cookie", "Date", "Content-Length")}
        return response.status_code, headers, body

    return strip


@pytest.fixture(scope="session")
def bounded():
    """Return bounded(call, *args, **kwargs): the call's result or exception; fail if it never returns.

    A guard against hanging, not a stopwatch: the limit is far above any normal answer.
    """

    def run(call, *args, **kwargs):
        future = Future()

        def target():
            try:
                future.set_result(call(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed back to the test's thread by future.result()
                future.set_exception(exc)

        threading.Thread(target=target, daemon=True).start()
        try:
            return future.result(timeout=60)
        except TimeoutError:
            if future.done():
                raise
            pytest.fail(f"{getattr(call, '__name__', call)} never returned (waited 60 s)")

    return run


@pytest.fixture(scope="session")
def wait_until():
    """Return wait_until(condition, failure, timeout=15): wait for condition() to hold, or fail saying failure."""

    def wait(condition, failure: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"{failure} (waited {timeout} s)")
            time.sleep(0.05)

    return wait


# -- a live server and a real browser


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
def live_server(make_app, config_overrides):
    """The app over real HTTP on a free loopback port (its PUBLIC_URL)."""
    port = sandbox.free_port()
    server = LiveServer(make_app(PUBLIC_URL=f"http://127.0.0.1:{port}", **config_overrides), port)
    yield server
    server.stop()


@pytest.fixture
def make_browser():
    """Return make_browser(language="pl"): Debian's headless Chromium through chromedriver, quit after the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def make(language="pl"):
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
        service = Service(executable_path="/usr/bin/chromedriver")
        drivers.append(webdriver.Chrome(service=service, options=options))
        return drivers[-1]

    yield make
    for driver in drivers:
        driver.quit()


@pytest.fixture
def browser(make_browser):
    return make_browser()


@pytest.fixture
def screenshot(request):
    """Return screenshot(driver, name): save test-artifacts/screenshots/<test>-<name>.png."""
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


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the golden files of tests/test_mail_messages.py from what the code renders now",
    )


# -- the directory's other clients: Dovecot IMAP and Apache httpd sign-on (pwdrst.sandbox_clients)


def _start_client(server):
    """Start a sandbox client server; fail (never skip) with the way out if its package is missing."""
    from pwdrst.sandbox_clients import MissingPackage

    try:
        return server.start()
    except MissingPackage as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def start_client():
    """Return start_client(server): start a Dovecot or Apache sandbox, failing with the way out if missing."""
    return _start_client


@pytest.fixture(scope="session")
def dovecot(slapd):
    """Dovecot IMAP binding to the session's slapd as the person, authentication cache off."""
    from pwdrst.sandbox_clients import Dovecot

    server = _start_client(Dovecot(slapd))
    yield server
    server.close()


@pytest.fixture(scope="session")
def apache_sso(slapd):
    """Apache httpd guarding /sso/ with LDAP Basic authentication against the session's slapd, caches off."""
    from pwdrst.sandbox_clients import ApacheLdap

    server = _start_client(ApacheLdap(slapd))
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


# -- Redis, for limits and sessions shared by several app servers


@pytest.fixture
def redis_server():
    """A private redis-server on a free loopback port: (its process, its URI)."""
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed: run scripts/setup.sh")
    port = sandbox.free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sandbox.wait_for_port(port)
    yield process, f"redis://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


# -- the command line, as an administrator runs it


@pytest.fixture
def flask_cli(server_settings, environment):
    """Return flask_cli(*args, **env): run `flask --app pwdrst` with the test settings in the environment."""

    def run(*args, **extra):
        env = environment(server_settings(), **extra)
        for name in [k for k, v in extra.items() if v is None]:
            del env[name]
        command = [sys.executable, "-m", "flask", "--app", "pwdrst", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    return run


@pytest.fixture
def make_ad_app(samba, make_app, smtp):
    """Return make_ad_app(**overrides): an app wired to the Samba DC (LDAP_FLAVOUR=ad) and the SMTP sink."""

    def make(**overrides):
        return make_app(**{**samba.app_settings(PUBLIC_URL, smtp.port), **overrides})

    return make


@pytest.fixture
def make_ad_person(samba):
    """Return make_ad_person(...): a fresh person in the DC's OU=people, whose password a test may change."""

    def make(given="Ewa", surname="Testowa", password=None, recovery=True, groups=()):
        n = next(_serial)
        uid = f"ad{surname.lower()[:8]}{n}".encode("ascii", "ignore").decode()  # sAMAccountName: 20 at most
        local = f"{given.lower()}.{surname.lower()}{n}".encode("ascii", "ignore").decode()
        person = Person(
            uid=uid,
            given_name=given,
            surname=f"{surname}{n}",
            password=password or f"Bardzo-dlugie-haslo-testowe-{n}",
            mail=(f"{local}@uni.example", f"{uid}@uni.example"),
            recovery=(f"{local}@private.example",) if recovery else (),
            groups=tuple(groups),
        )
        samba.add_person(person)
        return person

    return make


@pytest.fixture(scope="session")
def ad_can_bind(samba):
    """Return ad_can_bind(who, password): whether a plain LDAPS bind to the DC, outside pwdrst, succeeds."""
    import ssl

    def bind(who, password: str) -> bool:
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=samba.ca_file)
        server = ldap3.Server("127.0.0.1", port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE)
        conn = ldap3.Connection(server, samba.dn(who), password.encode(), raise_exceptions=False)
        try:
            return conn.bind()
        finally:
            conn.unbind()

    return bind
