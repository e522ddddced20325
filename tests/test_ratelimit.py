"""Login limits that hold: one atomic count per bind, one budget per account, a flat in-memory store."""

import threading
import time

import pytest
from limits import parse
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from pwdrst import create_app, ratelimit
from pwdrst.directory import fold_identifier
from tests.conftest import audit_events, base_config, csrf_token
from tests.test_account import failure_count, login
from tests.test_security import redis_server  # noqa: F401 - a fixture: a real redis-server

LIMIT = 3
LIMITS = {"RATELIMIT_LOGIN_ACCOUNT": f"{LIMIT} per 15 minutes", "RATELIMIT_LOGIN_ADDRESS": "1000 per minute"}


def storm(apps, identifier, password, count=40):
    """Send count logins at the same moment, spread over the apps; return their statuses."""
    clients = []
    for n in range(count):
        client = apps[n % len(apps)].test_client()
        clients.append((client, csrf_token(client.get("/login").get_data(as_text=True))))
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


def test_simultaneous_wrong_logins_send_at_most_the_limit_of_binds(slapd, smtp, make_person, caplog):
    person = make_person()
    app = create_app(base_config(slapd, smtp, **LIMITS))
    statuses = storm([app], person.uid, "wrong-password")
    assert sorted(statuses) == [401] * LIMIT + [429] * (40 - LIMIT)
    # The server's own record: one pwdFailureTime per bind it refused; the account is not locked.
    assert failure_count(slapd, person.dn) == LIMIT
    assert len([e for e in audit_events(caplog, "login") if e["outcome"] == "failed"]) == LIMIT
    assert login(app.test_client(), person.uid, person.password).status_code == 429


def test_simultaneous_wrong_logins_on_two_app_servers_share_one_redis_budget(
    slapd,
    smtp,
    make_person,
    redis_server,  # noqa: F811 - the fixture imported above
):
    _, uri = redis_server
    person = make_person()
    apps = [create_app(base_config(slapd, smtp, RATELIMIT_STORAGE_URI=uri, **LIMITS)) for _ in range(2)]
    statuses = storm(apps, person.mail[0], "wrong-password")
    assert statuses.count(401) == LIMIT and statuses.count(429) == 40 - LIMIT
    assert failure_count(slapd, person.dn) == LIMIT


@pytest.mark.parametrize("config_overrides", [LIMITS])
def test_a_successful_login_clears_the_account_budget(client, slapd, make_person, config_overrides):
    person = make_person()
    for _ in range(LIMIT - 1):
        assert login(client, person.uid, "wrong-password").status_code == 401
    assert login(client, person.uid, person.password).status_code == 303
    for _ in range(LIMIT):
        assert login(client, person.uid, "wrong-password").status_code == 401
    assert login(client, person.uid, "wrong-password").status_code == 429


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
def test_every_spelling_of_an_account_shares_its_one_budget(client, slapd, make_person, spelling, config_overrides):
    person = make_person(given="Iga", surname="Kowalski")
    assert "i" in person.uid
    for _ in range(LIMIT - 1):
        assert login(client, person.uid, "wrong-password").status_code == 401
    assert login(client, spelling(person), "wrong-password").status_code == 401
    assert login(client, person.uid, "wrong-password").status_code == 429
    assert login(client, spelling(person), person.password).status_code == 429
    assert failure_count(slapd, person.dn) == LIMIT


@pytest.mark.parametrize("config_overrides", [LIMITS])
def test_unknown_spellings_share_a_budget_before_any_account_is_known(client, config_overrides):
    for spelling in ("nobody-here", "NOBODY-HERE"):
        assert login(client, spelling, "wrong-password").status_code == 401
    assert login(client, full_width("nobody-here"), "wrong-password").status_code == 401
    assert login(client, "Nobody-Here", "wrong-password").status_code == 429


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
