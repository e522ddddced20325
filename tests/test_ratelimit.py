"""Limits shared by every app server through Redis, and counting on when Redis goes away."""

import pytest


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
