"""Limits shared by every app server through Redis, and counting on when Redis goes away."""

import shutil
import subprocess
import time

import pytest

from pwdrst import create_app, sandbox
from tests.conftest import base_config, csrf_token, submit
from tests.test_account import login


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
