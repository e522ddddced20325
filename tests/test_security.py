"""Headers, cookies, hosts and proxies, limits shared through Redis, and no enumeration."""

import re
import shutil
import subprocess
import time

import pytest

from pwdrst import create_app, sandbox
from tests.conftest import audit_events, base_config, csrf_token, link_path, mail_link, submit
from tests.test_account import login

PAGES = [
    "/",
    "/reset",
    "/reset/sent",
    "/login",
    "/reset/new",
    "/no-such-page",
    "/lang/en",
    "/healthz",
    "/static/style.css",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_response_carries_the_security_headers(client, path):
    response = client.get(path)
    response.close()
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_no_hsts_when_the_public_url_is_plain_http(slapd, smtp):
    app = create_app(base_config(slapd, smtp, PUBLIC_URL="http://localhost:5000"))
    response = app.test_client().get("/")
    assert "Strict-Transport-Security" not in response.headers
    assert "Secure" not in (response.headers.get("Set-Cookie") or "")


def inline_code(html: str) -> list[str]:
    """Return inline scripts, style elements and style or event-handler attributes in a page."""
    found = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    found += re.findall(r"<style\b", html)
    found += re.findall(r"\s(?:style|on[a-z]+)=", html)
    return found


def test_no_page_has_inline_script_or_style(client, smtp, make_person):
    person = make_person()
    pages = [client.get(path).get_data(as_text=True) for path in ("/", "/reset", "/login", "/no-such-page")]
    submit(client, "/reset", {"identifier": person.uid})
    client.get(link_path(mail_link(smtp.wait_for(1)[0])))
    pages.append(client.get("/reset/new").get_data(as_text=True))
    login(client, person.uid, person.password)
    pages += [client.get(path).get_data(as_text=True) for path in ("/password", "/recovery")]
    for html in pages:
        assert inline_code(html) == []


@pytest.mark.parametrize(
    "path, referrer",
    [("/reset/new", "no-referrer"), ("/login", "no-referrer"), ("/reset", "same-origin"), ("/", "same-origin")],
)
def test_referrer_policy_by_page(client, path, referrer):
    assert client.get(path).headers["Referrer-Policy"] == referrer


def test_pages_that_take_a_secret_are_never_cached(client, make_person):
    person = make_person()
    assert client.get("/login").headers["Cache-Control"] == "no-store"
    login(client, person.uid, person.password)
    assert client.get("/password").headers["Cache-Control"] == "no-store"


def test_recovery_and_helpdesk_pages_are_never_cached(app, make_person):
    staff = make_person(groups=(sandbox.HELPDESK_GROUP,))
    client = app.test_client()
    login(client, staff.uid, staff.password)
    token = client.get("/recovery").get_data(as_text=True)
    values = {"login": staff.uid, "token": "WyJ4Il0.forged.token-value"}
    walked = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/recovery", "/helpdesk")):
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<{name}>", values[name])
        for method in sorted(rule.methods & {"GET", "POST"}):
            data = {"csrf_token": csrf_token(token), "index": "0"} if method == "POST" else None
            response = client.open(path, method=method, data=data)
            assert response.headers.get("Cache-Control") == "no-store", (method, path, response.status_code)
            walked.append((method, rule.rule))
    assert len(walked) >= 8, walked
    anonymous = app.test_client()
    assert anonymous.get("/helpdesk/").headers["Cache-Control"] == "no-store"


def test_session_cookie_is_secure_httponly_samesite(client):
    cookie = client.get("/reset").headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_trusted_hosts_come_from_the_public_url(slapd, smtp):
    config = base_config(slapd, smtp)
    del config["TRUSTED_HOSTS"]
    app = create_app(config)
    assert app.config["TRUSTED_HOSTS"] == ["pwdrst.uni.example"]
    client = app.test_client()
    assert client.get("/", headers={"Host": "pwdrst.uni.example"}).status_code == 200
    refused = client.get("/", headers={"Host": "evil.example"})
    assert refused.status_code == 400
    assert "unknown host" in refused.get_data(as_text=True)


def test_forwarded_for_is_ignored_without_trusted_proxies(client, caplog):
    submit(client, "/reset", {"identifier": "nobody-here"}, headers={"X-Forwarded-For": "203.0.113.9"})
    [event] = audit_events(caplog, "reset_requested")
    assert event["client"] == "127.0.0.1"


@pytest.mark.parametrize("config_overrides", [{"PROXY_COUNT": 1}])
def test_forwarded_for_is_used_through_one_trusted_proxy(client, caplog, config_overrides):
    headers = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}  # a client-forged first hop, then the proxy's
    submit(client, "/reset", {"identifier": "nobody-here"}, headers=headers)
    [event] = audit_events(caplog, "reset_requested")
    assert event["client"] == "203.0.113.9"


@pytest.mark.parametrize("config_overrides", [{"PROXY_COUNT": 1}])
def test_forwarded_prefix_from_a_trusted_proxy_is_respected(client, config_overrides):
    page = client.get("/", headers={"X-Forwarded-Prefix": "/pwdrst"}).get_data(as_text=True)
    assert 'href="/pwdrst/reset"' in page and 'href="/pwdrst/static/style.css' in page


def test_app_runs_under_a_path_prefix(app):
    # Served at /pwdrst/ on a shared host (the seed's reset robot): SCRIPT_NAME is /pwdrst.
    page = app.test_client().get("/", base_url="http://localhost/pwdrst/").get_data(as_text=True)
    assert 'href="/pwdrst/login"' in page
    assert 'src="/pwdrst/static/pwdrst.js"' in page


# -- limits shared through Redis


@pytest.fixture
def redis_server():
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


def two_apps(slapd, smtp, uri, **overrides):
    return [
        create_app(base_config(slapd, smtp, RATELIMIT_STORAGE_URI=uri, **overrides)).test_client() for _ in range(2)
    ]


def test_two_app_servers_share_one_limit_through_redis(slapd, smtp, redis_server):
    _, uri = redis_server
    first, second = two_apps(slapd, smtp, uri, RATELIMIT_STRENGTH="3 per minute")
    statuses = []
    for n in range(6):
        client = (first, second)[n % 2]
        token = csrf_token(client.get("/reset").get_data(as_text=True))
        statuses.append(
            client.post("/api/strength", json={"password": "x"}, headers={"X-CSRFToken": token}).status_code
        )
    assert statuses == [200, 200, 200, 429, 429, 429]


def test_reset_mail_limit_is_shared_through_redis(slapd, smtp, redis_server, make_person):
    _, uri = redis_server
    person = make_person()
    first, second = two_apps(slapd, smtp, uri)
    for n in range(4):
        submit((first, second)[n % 2], "/reset", {"identifier": person.uid})
    smtp.wait_for(3)
    time.sleep(0.5)
    assert len(smtp.messages) == 3


def test_redis_going_away_never_makes_a_500(slapd, smtp, redis_server, make_person, caplog):
    process, uri = redis_server
    person = make_person()
    [client, _] = two_apps(slapd, smtp, uri)
    assert submit(client, "/reset", {"identifier": person.uid}).status_code == 303
    process.terminate()
    process.wait(10)
    assert submit(client, "/reset", {"identifier": person.uid}).status_code == 303
    token = csrf_token(client.get("/reset").get_data(as_text=True))
    assert client.post("/api/strength", json={"password": "x"}, headers={"X-CSRFToken": token}).status_code == 200
    assert login(client, person.uid, "wrong-password").status_code == 401
    assert "rate limit storage unreachable" in caplog.text.lower() or "falling back" in caplog.text.lower()


# -- no enumeration


def comparable(response):
    body = re.sub(r'(csrf[-_]token"[^>]*(?:value|content)=")[^"]+', r"\1", response.get_data(as_text=True))
    headers = {k: v for k, v in response.headers.items() if k not in ("Set-Cookie", "Date", "Content-Length")}
    return response.status_code, headers, body


def test_reset_request_for_real_and_unknown_accounts_is_indistinguishable(client, make_person):
    person = make_person()
    real = submit(client, "/reset", {"identifier": person.uid})
    unknown = submit(client, "/reset", {"identifier": "nobody-here-at-all"})
    assert comparable(real) == comparable(unknown)
    assert comparable(client.get(real.headers["Location"])) == comparable(client.get(unknown.headers["Location"]))
    assert set(real.headers.keys()) == set(unknown.headers.keys())


def test_login_with_a_wrong_password_and_an_unknown_account_is_indistinguishable(client, make_person):
    person = make_person()
    wrong = login(client, person.uid, "wrong-password")
    unknown = login(client, "nobody-here-at-all", "wrong-password")
    status, headers, body = comparable(wrong)
    assert (status, headers) == comparable(unknown)[:2]
    assert body.replace(person.uid, "X") == comparable(unknown)[2].replace("nobody-here-at-all", "X")
