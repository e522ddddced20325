"""The security headers on every page, and the request trust around them: cookies, hosts, proxies."""

import re

import pytest

from pwdrst import sandbox

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


def test_security_headers_are_on_every_page(client):
    response = client.get("/")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_no_hsts_when_the_public_url_is_plain_http(make_app):
    response = make_app(PUBLIC_URL="http://localhost:5000").test_client().get("/")
    assert "Strict-Transport-Security" not in response.headers
    assert "Secure" not in (response.headers.get("Set-Cookie") or "")


def inline_code(html: str) -> list[str]:
    """Return inline scripts, style elements and style or event-handler attributes in a page."""
    found = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    found += re.findall(r"<style\b", html)
    found += re.findall(r"\s(?:style|on[a-z]+)=", html)
    return found


def test_no_page_has_inline_script_or_style(client, make_person, auth, reset_flow):
    person = make_person()
    pages = [client.get(path).get_data(as_text=True) for path in ("/", "/reset", "/login", "/no-such-page")]
    reset_flow.open(reset_flow.link(person.uid))
    pages.append(client.get("/reset/new").get_data(as_text=True))
    auth.login(person.uid, person.password)
    pages += [client.get(path).get_data(as_text=True) for path in ("/password", "/recovery")]
    for html in pages:
        assert inline_code(html) == []


@pytest.mark.parametrize(
    "path, referrer",
    [("/reset/new", "no-referrer"), ("/login", "no-referrer"), ("/reset", "same-origin"), ("/", "same-origin")],
)
def test_referrer_policy_by_page(client, path, referrer):
    assert client.get(path).headers["Referrer-Policy"] == referrer


def test_pages_that_take_a_secret_are_never_cached(client, make_person, auth):
    person = make_person()
    assert client.get("/login").headers["Cache-Control"] == "no-store"
    auth.login(person.uid, person.password)
    assert client.get("/password").headers["Cache-Control"] == "no-store"


def test_recovery_and_helpdesk_pages_are_never_cached(app, make_person, auth, csrf_token):
    staff = make_person(groups=(sandbox.HELPDESK_GROUP,))
    client = app.test_client()
    auth.on(client).login(staff.uid, staff.password)
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


def test_trusted_hosts_come_from_the_public_url(make_app):
    app = make_app(TRUSTED_HOSTS=None)  # None: the default, taken from PUBLIC_URL
    assert app.config["TRUSTED_HOSTS"] == ["pwdrst.uni.example"]
    client = app.test_client()
    assert client.get("/", headers={"Host": "pwdrst.uni.example"}).status_code == 200
    refused = client.get("/", headers={"Host": "evil.example"})
    assert refused.status_code == 400
    assert "unknown host" in refused.get_data(as_text=True)


def test_forwarded_for_is_ignored_without_trusted_proxies(client, audit, submit):
    submit(client, "/reset", {"identifier": "nobody-here"}, headers={"X-Forwarded-For": "203.0.113.9"})
    [event] = audit("reset_requested")
    assert event["client"] == "127.0.0.1"


@pytest.mark.parametrize("config_overrides", [{"PROXY_COUNT": 1}])
def test_forwarded_for_is_used_through_one_trusted_proxy(client, config_overrides, audit, submit):
    headers = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}  # a client-forged first hop, then the proxy's
    submit(client, "/reset", {"identifier": "nobody-here"}, headers=headers)
    [event] = audit("reset_requested")
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
