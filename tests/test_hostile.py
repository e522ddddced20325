"""Hostile input against every form and endpoint, property-based (hypothesis).

Properties, for every generated request: never a 5xx; never a change in the directory; every
refusal is a 4xx page or JSON with a sentence. The cases run are counted and printed at the end of
the test run (at least 10,000 in the default run; PWDRST_TEST_HYPOTHESIS_SCALE=10 runs ten times more).
"""

import collections
import os
import string
from dataclasses import dataclass
from urllib.parse import quote, quote_from_bytes

import ldap3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pwdrst import create_app, sandbox
from pwdrst.links import make_token

SCALE = float(os.environ.get("PWDRST_TEST_HYPOTHESIS_SCALE", "1"))
CASES: collections.Counter = collections.Counter()


def examples(count: int):
    """Settings for a property test of count cases (times the scale)."""
    return settings(
        max_examples=int(count * SCALE),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


LDAP_NASTIES = ["*", "*)(uid=*", ")(|(objectClass=*))", "\\", "\\2a", "\x00", "(", ")", "uid=x,dc=uni", "#", "+", ";"]
WEB_NASTIES = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{{7*7}}", "%s%n", "../../etc/passwd"]
CONTROL = "".join(chr(c) for c in range(32)) + "\x7f"

hostile_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.sampled_from(CONTROL + string.punctuation + "ąęłżźść"), max_size=40),
    st.sampled_from(LDAP_NASTIES + WEB_NASTIES),
    st.builds(lambda a, b: a + b, st.sampled_from(LDAP_NASTIES + WEB_NASTIES), st.text(max_size=20)),
    st.integers(min_value=200, max_value=5000).map(lambda n: "x" * n),
)
csrf_modes = st.sampled_from(["valid", "missing", "forged", "stale"])

VICTIM = sandbox.Person(
    "ofiara",
    "Olga",
    "Ofiarna",
    "Bardzo-dlugie-haslo-ofiary-1",
    ("olga.ofiarna@uni.example", "ofiara@uni.example"),
    ("olga.ofiarna@private.example",),
)


@dataclass
class World:
    """The app under attack, a logged-in victim and staff member, a genuine link, and the directory."""

    app: object
    victim: object
    staff: object
    link: str
    slapd: object
    csrf_token: object

    def token(self, client, mode: str) -> str | None:
        """A CSRF token for a form post: valid, missing, forged, or another session's (stale)."""
        if mode == "missing":
            return None
        if mode == "forged":
            return "IjRmZjQ5ZjU2In0.forged.signature"
        if mode == "stale":
            return self.csrf_token(self.app.test_client().get("/reset"))
        return self.csrf_token(client.get("/reset"))

    def post_form(self, client, path, fields: dict, mode: str):
        """POST a form with a CSRF token of the given mode."""
        token = self.token(client, mode)
        data = dict(fields)
        if token is not None:
            data["csrf_token"] = token
        return client.post(path, data=data)


@pytest.fixture(scope="module")
def world(slapd, server_settings, submit, csrf_token):
    """An app with limits out of the way (so the deep paths run), a victim and a staff session."""
    if not any(p.uid == VICTIM.uid for p in getattr(slapd, "_added", [])):
        slapd.add_person(VICTIM)
        slapd._added = [*getattr(slapd, "_added", []), VICTIM]
    lots = "1000000 per minute"
    limits = (
        "RESET_REQUEST",
        "LINK_USE",
        "STRENGTH",
        "LOGIN_ADDRESS",
        "RECOVERY_MAIL",
        "HELPDESK_ISSUE",
    )
    # Module-scoped (make_app is per test): the hypothesis tests share one app and its sessions.
    app = create_app(server_settings(**{f"RATELIMIT_{name}": lots for name in limits}))
    victim = app.test_client()
    staff = app.test_client()
    for client, person in ((victim, VICTIM), (staff, sandbox.SAMPLE_PEOPLE[3])):
        answer = submit(client, "/login", {"identifier": person.uid, "password": person.password})
        assert answer.status_code == 303
    with app.app_context():
        account = app.extensions["pwdrst.directory"].find_account(VICTIM.uid)
        link_token = make_token("reset", account.login, account.fingerprint)
    yield World(app, victim, staff, link_token, slapd, csrf_token)
    app.extensions["pwdrst.mail"].drain(5)
    app.extensions["pwdrst.directory"].close()


def snapshot(slapd) -> dict:
    """Everything the app could change in the directory, for every entry."""
    conn = ldap3.Connection(ldap3.Server(slapd.url), sandbox.ADMIN_DN, sandbox.ADMIN_PASSWORD, auto_bind=True)
    conn.search(sandbox.BASE_DN, "(objectClass=*)", attributes=["userPassword", "recoveryMail", "mail", "member"])
    state = {
        e.entry_dn: sorted((k, sorted(map(str, v))) for k, v in e.entry_attributes_as_dict.items())
        for e in conn.entries
    }
    conn.unbind()
    return state


@pytest.fixture
def unchanged(world):
    """Assert that the directory is exactly as it was after the test."""
    before = snapshot(world.slapd)
    yield
    assert snapshot(world.slapd) == before


def check(response, counter: str):
    """The properties every answer must have."""
    CASES[counter] += 1
    status = response.status_code
    body = response.get_data(as_text=True)
    assert status < 500, body[:500]
    if 400 <= status < 500 and response.request.method != "HEAD":  # HEAD answers carry no body
        if response.is_json:
            assert (response.get_json() or {}).get("message"), body[:200]
        elif response.mimetype == "text/html":
            assert any(c in body for c in ('class="notice', 'class="errors"', 'class="error-summary"')), body[:500]
        else:
            assert body.strip()


# -- anonymous forms


@examples(1200)
@given(identifier=hostile_text, mode=csrf_modes)
def test_reset_request(world, unchanged, identifier, mode):
    client = world.app.test_client()
    check(world.post_form(client, "/reset", {"identifier": identifier}, mode), "reset request")


@examples(1200)
@given(identifier=hostile_text, password=hostile_text, mode=csrf_modes)
def test_login(world, unchanged, identifier, password, mode):
    client = world.app.test_client()
    data = {"identifier": identifier, "password": password}
    check(world.post_form(client, "/login", data, mode), "login")


def spoil_strategy(token: str):
    return st.one_of(
        hostile_text.filter(lambda t: "/" not in t and "?" not in t and "#" not in t and t.strip()),
        st.integers(min_value=1, max_value=len(token) - 1).map(lambda n: token[:n]),  # truncated
        st.tuples(st.integers(0, len(token) - 1), st.sampled_from("AZaz09-_.")).map(
            lambda p: token[: p[0]] + p[1] + token[p[0] + 1 :]
        ),  # one character changed
        st.just(token + "x"),
    )


@examples(1000)
@given(data=st.data())
def test_link_use(world, unchanged, data):
    spoiled = data.draw(spoil_strategy(world.link))
    client = world.app.test_client()
    response = client.get("/reset/" + quote(spoiled, safe=""))
    check(response, "link")
    if response.status_code == 303:  # the genuine token (drawn unchanged by chance): the form must hold too
        page = client.get("/reset/new")
        check(page, "link")
        token = world.csrf_token(page)
        form = {"csrf_token": token, "new_password": spoiled, "confirm": spoiled + "!"}
        check(client.post("/reset/new", data=form), "link")


@examples(800)
@given(new=hostile_text, confirm=hostile_text, mode=csrf_modes)
def test_new_password_form(world, unchanged, new, confirm, mode):
    client = world.app.test_client()
    client.get("/reset/" + world.link)
    if confirm == new:
        confirm += "?"  # matching hostile passwords could be legitimately strong; the property is about refusals
    check(world.post_form(client, "/reset/new", {"new_password": new, "confirm": confirm}, mode), "new password")


# -- logged-in forms


@examples(800)
@given(current=hostile_text, new=hostile_text, confirm=hostile_text, mode=csrf_modes)
def test_change_password_form(world, unchanged, current, new, confirm, mode):
    if current == VICTIM.password:
        current += "?"
    data = {"current_password": current, "new_password": new, "confirm": confirm}
    check(world.post_form(world.victim, "/password", data, mode), "change password")


@examples(800)
@given(address=hostile_text, replace=st.sampled_from(["", "y", "on", "\x00"]), mode=csrf_modes)
def test_recovery_form(world, unchanged, address, replace, mode):
    check(
        world.post_form(world.victim, "/recovery", {"address": address, "replace": replace}, mode),
        "recovery",
    )


@examples(400)
@given(index=hostile_text, confirm=hostile_text, mode=csrf_modes)
def test_recovery_remove(world, unchanged, index, confirm, mode):
    data = {"index": index, "confirm": confirm if confirm in ("", "\x00") else ""}
    check(world.post_form(world.victim, "/recovery/remove", data, mode), "recovery remove")


@examples(400)
@given(
    token=hostile_text.filter(lambda t: t.strip() and "/" not in t and "?" not in t and "#" not in t), mode=csrf_modes
)
def test_recovery_confirmation(world, unchanged, token, mode):
    client = world.app.test_client()
    check(client.get("/recovery/" + quote(token, safe="")), "recovery confirm")
    check(world.post_form(client, "/recovery/confirm", {}, mode), "recovery confirm")


# -- the meter


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | hostile_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=8,
)


@examples(1200)
@given(
    body=st.one_of(
        json_values.map(lambda v: {"json": {"password": v}}),
        json_values.map(lambda v: {"json": v}),
        st.binary(max_size=300).map(lambda b: {"data": b, "content_type": "application/json"}),
        st.binary(max_size=300).map(lambda b: {"data": b, "content_type": "text/plain"}),
        hostile_text.map(lambda t: {"data": {"password": t}}),
    ),
    mode=csrf_modes,
)
def test_strength_endpoint(world, unchanged, body, mode):
    client = world.app.test_client()
    token = world.token(client, mode)
    headers = {"X-CSRFToken": token} if token else {}
    check(client.post("/api/strength", headers=headers, **body), "strength")


# -- the helpdesk


@examples(800)
@given(query=hostile_text)
def test_helpdesk_search(world, unchanged, query):
    check(world.staff.get("/helpdesk/", query_string={"q": query}), "helpdesk search")


@examples(600)
@given(
    login=hostile_text.filter(lambda t: t.strip() and "/" not in t and "?" not in t and "#" not in t),
    delivery=st.one_of(st.sampled_from(["address", "shown", "nonsense", ""]), hostile_text),
    address=hostile_text,
    mode=csrf_modes,
)
def test_helpdesk_issue(world, unchanged, login, delivery, address, mode):
    data = {"delivery": delivery, "address": address}
    check(
        world.post_form(world.staff, f"/helpdesk/account/{quote(login, safe='')}/link", data, mode),
        "helpdesk",
    )


# -- methods, content types, raw bodies, sizes

PATHS = [
    "/",
    "/reset",
    "/reset/new",
    "/reset/sent",
    "/login",
    "/logout",
    "/password",
    "/recovery",
    "/recovery/remove",
    "/recovery/confirm",
    "/api/strength",
    "/helpdesk/",
    "/healthz",
    "/lang/en",
]


@examples(600)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.sampled_from(PATHS),
    content_type=st.sampled_from(
        ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json", "text/xml", ""]
    ),
    body=st.binary(max_size=400),
)
def test_any_method_and_body_on_any_path(world, unchanged, method, path, content_type, body):
    for client in (world.app.test_client(), world.victim):
        check(client.open(path, method=method, data=body, content_type=content_type or None), "methods")


@examples(300)
@given(
    field=st.sampled_from(["identifier", "password", "new_password", "address"]),
    raw=st.binary(min_size=1, max_size=200),
)
def test_invalid_utf8_in_form_bodies(world, unchanged, field, raw):
    client = world.app.test_client()
    token = world.csrf_token(client.get("/reset"))
    body = f"csrf_token={token}&{field}=".encode() + quote_from_bytes(b"\xff\xfe" + raw).encode()
    for path in ("/reset", "/login"):
        check(client.post(path, data=body, content_type="application/x-www-form-urlencoded"), "invalid utf-8")


@examples(40)
@given(
    size=st.integers(min_value=300_000, max_value=3_000_000),
    path=st.sampled_from(["/reset", "/login", "/api/strength"]),
)
def test_megabyte_bodies_get_a_413(world, unchanged, size, path):
    response = world.app.test_client().post(
        path, data=b"a=" + b"x" * size, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413
    check(response, "megabyte bodies")


@examples(400)
@given(
    target=hostile_text,
    code=st.one_of(st.sampled_from(["pl", "en"]), hostile_text.filter(lambda t: "/" not in t and t.strip())),
)
def test_language_switch(world, unchanged, target, code):
    response = world.app.test_client().get(f"/lang/{quote(code, safe='')}", query_string={"next": target})
    check(response, "language switch")
    if response.status_code in (301, 302, 303):
        assert response.headers["Location"].startswith("/"), response.headers["Location"]
        assert not response.headers["Location"].startswith("//")


def test_hostile_cases_ran():
    """The suite's hostile cases, for the record (the README's test command must run at least 10,000)."""
    total = sum(CASES.values())
    if SCALE >= 1 and len(CASES) >= 14:
        assert total >= 10_000, CASES
