"""The after-change hook: run after every change or reset, given the login only, never in the way."""

import shutil
import sys

import pytest

from pwdrst import create_app
from pwdrst.config import ConfigError
from pwdrst.sandbox_clients import Dovecot

# Writes its arguments, environment and standard input to the file named first, as the operator's
# command would see them.
RECORDER = """
import json, os, sys
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump({"argv": sys.argv[2:], "env": dict(os.environ), "stdin": sys.stdin.read()}, fh)
"""


@pytest.fixture
def hook_app(make_app):
    """Return hook_app(command, **settings): an app with POST_CHANGE_COMMAND set, and its client."""

    def make(command, **settings):
        app = make_app(POST_CHANGE_COMMAND=command, **settings)
        return app, app.test_client()

    return make


@pytest.fixture
def change_as(submit):
    """Return change_as(client, person, new): log in as the person and change the password."""

    def run(client, person, new):
        submit(client, "/login", {"identifier": person.uid, "password": person.password})
        data = {"current_password": person.password, "new_password": new, "confirm": new}
        return submit(client, "/password", data)

    return run


def wait_for_hook(app) -> None:
    assert app.extensions["pwdrst.hook"].wait(30), "the after-change command never finished"


def test_the_hook_gets_the_login_and_never_the_password(hook_app, change_as, make_person, new_password, tmp_path):
    record = tmp_path / "hook.json"
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    app, client = hook_app([sys.executable, str(script), str(record)])
    person = make_person()
    assert change_as(client, person, new_password).headers["Location"] == "/password/changed"
    wait_for_hook(app)
    seen = record.read_text(encoding="utf-8")
    assert f'"argv": ["{person.uid}"]' in seen
    assert new_password not in seen and person.password not in seen
    assert '"stdin": ""' in seen


def test_a_reset_by_link_runs_the_hook_too(hook_app, reset_flow, make_person, new_password, tmp_path, audit):
    app, client = hook_app(["true"])
    person = make_person()
    link = reset_flow.link(person.uid)
    reset_flow.client = client
    assert reset_flow.set_password(link).headers["Location"] == "/reset/done"
    wait_for_hook(app)
    assert [e["outcome"] for e in audit("post_change_hook") if e["account"] == person.uid] == ["ok"]


def test_a_failing_hook_does_not_undo_the_change(hook_app, change_as, make_person, new_password, can_bind, audit):
    app, client = hook_app("false")
    person = make_person()
    assert change_as(client, person, new_password).headers["Location"] == "/password/changed"
    wait_for_hook(app)
    assert can_bind(person.dn, new_password)
    [event] = audit("post_change_hook")
    assert event["outcome"] == "failed" and event["exit_code"] == 1


def test_a_hung_hook_is_stopped_at_its_timeout(hook_app, change_as, make_person, new_password, can_bind, audit):
    app, client = hook_app([sys.executable, "-c", "import time; time.sleep(60)"], POST_CHANGE_TIMEOUT=0.5)
    person = make_person()
    assert change_as(client, person, new_password).headers["Location"] == "/password/changed"
    wait_for_hook(app)
    assert [e["outcome"] for e in audit("post_change_hook")] == ["timeout"]
    assert can_bind(person.dn, new_password)


def test_a_refused_change_runs_no_hook(hook_app, change_as, make_person, audit):
    app, client = hook_app(["true"])
    person = make_person()
    assert change_as(client, person, "short").status_code == 400
    wait_for_hook(app)
    assert audit("post_change_hook") == []


def test_a_hook_program_that_does_not_exist_stops_start_up(server_settings):
    with pytest.raises(ConfigError, match="POST_CHANGE_COMMAND"):
        create_app(server_settings(POST_CHANGE_COMMAND="no-such-program-pwdrst --flush"))


def test_flushing_dovecots_cache_refuses_the_old_password_at_once(
    slapd, hook_app, change_as, make_person, new_password
):
    with Dovecot(slapd, auth_cache_size="1M", auth_cache_ttl="1 hour") as mailbox:
        person = make_person()
        assert mailbox.login(person.uid, person.password)  # now in Dovecot's cache
        flush = [shutil.which("doveadm"), "-c", mailbox.config_path, "auth", "cache", "flush"]
        app, client = hook_app(flush)
        assert change_as(client, person, new_password).headers["Location"] == "/password/changed"
        wait_for_hook(app)
        assert not mailbox.login(person.uid, person.password)
        assert mailbox.login(person.uid, new_password)
