"""Limits shared by every app server through Redis, and counting on when Redis goes away."""

import threading
import time

import pytest
from limits import parse
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from pwdrst import ratelimit
from pwdrst.directory import fold_identifier


@pytest.fixture
def two_app_servers(make_app, redis_server):
    """Return two_app_servers(**overrides): two apps counting their limits in the same Redis."""
    _, uri = redis_server
    return lambda **overrides: [make_app(RATELIMIT_STORAGE_URI=uri, **overrides) for _ in range(2)]


@pytest.fixture
def meter(csrf_token):
    """Return meter(client): POST a password to the strength meter, with the page's CSRF token."""

    def post(client):
        token = csrf_token(client.get("/reset"))
        return client.post("/api/strength", json={"password": "x"}, headers={"X-CSRFToken": token})

    return post


def test_two_app_servers_share_one_limit_through_redis(two_app_servers, meter):
    clients = [app.test_client() for app in two_app_servers(RATELIMIT_STRENGTH="3 per minute")]
    statuses = [meter(clients[n % 2]).status_code for n in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429]


def test_reset_mail_limit_is_shared_through_redis(two_app_servers, smtp, reset_flow, make_person):
    person = make_person()
    apps = two_app_servers()
    clients = [app.test_client() for app in apps]
    for n in range(4):
        reset_flow.request(person.uid, client=clients[n % 2])
    assert len(smtp.delivered(*apps)) == 3


def test_redis_going_away_never_makes_a_500(
    two_app_servers, redis_server, auth, reset_flow, meter, make_person, caplog
):
    process, _ = redis_server
    person = make_person()
    client = two_app_servers()[0].test_client()
    assert reset_flow.request(person.uid, client=client).status_code == 303
    process.terminate()
    process.wait(10)
    assert reset_flow.request(person.uid, client=client).status_code == 303
    assert meter(client).status_code == 200
    assert auth.on(client).login(person.uid, "wrong-password").status_code == 401
    assert "rate limit storage unreachable" in caplog.text.lower() or "falling back" in caplog.text.lower()


# -- login limits: atomic, keyed on the account, flat in cost

LIMIT = 3
LIMITS = {"RATELIMIT_LOGIN_ACCOUNT": f"{LIMIT} per 15 minutes", "RATELIMIT_LOGIN_ADDRESS": "1000 per minute"}


@pytest.fixture
def storm(csrf_token):
    """Return storm(apps, identifier, password, count=40): logins sent at one moment; their statuses."""

    def send(apps, identifier, password, count=40):
        return _storm(apps, identifier, password, count, csrf_token)

    return send


def _storm(apps, identifier, password, count, csrf_token):
    clients = []
    for n in range(count):
        client = apps[n % len(apps)].test_client()
        clients.append((client, csrf_token(client.get("/login"))))
    start = threading.Barrier(count)
    statuses = []

    def attempt(client, token):
        start.wait()
        data = {"csrf_token": token, "identifier": identifier, "password": password}
        statuses.append(client.post("/login", data=data).status_code)

    threads = [threading.Thread(target=attempt, args=pair) for pair in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


def test_simultaneous_wrong_logins_send_at_most_the_limit_of_binds(
    make_app, make_person, storm, failure_count, audit, auth
):
    person = make_person()
    app = make_app(**LIMITS)
    statuses = storm([app], person.uid, "wrong-password")
    assert sorted(statuses) == [401] * LIMIT + [429] * (40 - LIMIT)
    # The server's own record: one pwdFailureTime per bind it refused; the account is not locked.
    assert failure_count(person.dn) == LIMIT
    assert len([e for e in audit("login") if e["outcome"] == "failed"]) == LIMIT
    assert auth.on(app.test_client()).login(person.uid, person.password).status_code == 429


def test_simultaneous_wrong_logins_on_two_app_servers_share_one_redis_budget(
    make_app, make_person, redis_server, storm, failure_count
):
    _, uri = redis_server
    person = make_person()
    apps = [make_app(RATELIMIT_STORAGE_URI=uri, **LIMITS) for _ in range(2)]
    statuses = storm(apps, person.mail[0], "wrong-password")
    assert statuses.count(401) == LIMIT and statuses.count(429) == 40 - LIMIT
    assert failure_count(person.dn) == LIMIT


@pytest.mark.parametrize("config_overrides", [LIMITS])
def test_a_successful_login_clears_the_account_budget(auth, make_person, config_overrides):
    person = make_person()
    for _ in range(LIMIT - 1):
        assert auth.login(person.uid, "wrong-password").status_code == 401
    assert auth.login(person.uid, person.password).status_code == 303
    for _ in range(LIMIT):
        assert auth.login(person.uid, "wrong-password").status_code == 401
    assert auth.login(person.uid, "wrong-password").status_code == 429


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda p: full_width(p.uid), id="full-width"),
        pytest.param(lambda p: p.uid.upper().replace("I", "\u0130"), id="dotted-capital-i"),
        pytest.param(lambda p: p.uid.upper(), id="upper-case"),
        pytest.param(lambda p: p.mail[0], id="alias"),
        pytest.param(lambda p: p.mail[2].upper(), id="other-alias-upper-case"),
        pytest.param(lambda p: full_width(p.mail[1]), id="full-width-alias"),
    ],
)
@pytest.mark.parametrize("config_overrides", [LIMITS])
def test_every_spelling_of_an_account_shares_its_one_budget(
    auth, make_person, spelling, failure_count, config_overrides
):
    person = make_person(given="Iga", surname="Kowalski")
    assert "i" in person.uid
    for _ in range(LIMIT - 1):
        assert auth.login(person.uid, "wrong-password").status_code == 401
    assert auth.login(spelling(person), "wrong-password").status_code == 401
    assert auth.login(person.uid, "wrong-password").status_code == 429
    assert auth.login(spelling(person), person.password).status_code == 429
    assert failure_count(person.dn) == LIMIT


@pytest.mark.parametrize("config_overrides", [LIMITS])
def test_unknown_spellings_share_a_budget_before_any_account_is_known(auth, config_overrides):
    for spelling in ("nobody-here", "NOBODY-HERE"):
        assert auth.login(spelling, "wrong-password").status_code == 401
    assert auth.login(full_width("nobody-here"), "wrong-password").status_code == 401
    assert auth.login("Nobody-Here", "wrong-password").status_code == 429


def test_identifiers_fold_to_one_spelling():
    assert fold_identifier("ｊｋｏｗａｌｓｋｉ") == "jkowalski"
    assert fold_identifier("JKOWALSK\u0130") == "jkowalski"
    assert fold_identifier(" Jan.Kowalski@UNI.example ") == "jan.kowalski@uni.example"


# -- the in-memory store: right counts, expired keys freed, no sweep of every key


def test_flat_memory_storage_counts_and_frees_expired_keys():
    storage = ratelimit.FlatMemoryStorage()
    fixed, moving = FixedWindowRateLimiter(storage), MovingWindowRateLimiter(storage)
    second = parse("2 per 1 second")
    assert [fixed.hit(second, "a") for _ in range(3)] == [True, True, False]
    assert [moving.hit(second, "b") for _ in range(3)] == [True, True, False]
    for n in range(1000):
        fixed.hit(second, f"client-{n}")
    assert len(storage.storage) == 1001 and len(storage.events) == 1
    time.sleep(1.1)
    fixed.hit(parse("5 per hour"), "later")
    assert set(storage.storage) == {parse("5 per hour").key_for("later")}
    assert storage.events == {}
    assert fixed.hit(second, "a") and moving.hit(second, "b")


def test_memory_uri_gets_the_flat_storage(app):
    from pwdrst.extensions import limiter

    with app.app_context():
        assert isinstance(limiter.storage, ratelimit.FlatMemoryStorage)
