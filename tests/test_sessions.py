"""Sessions kept on the server: ended by logout, by any password change, by time; only an id in the cookie."""

import base64
import re
import subprocess
import sys
import time

import pytest
import redis

from pwdrst import config, create_app, sandbox
from pwdrst.sandbox import free_port, wait_for_port

STAFF = sandbox.SAMPLE_PEOPLE[3]  # mzielinska, helpdesk group

COOKIE = "pwdrst_session"


def session_id(client) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else None


def copy_of(app, client):
    """Return a second client (another browser) holding a copy of the client's session cookie."""
    other = app.test_client()
    other.set_cookie(COOKIE, session_id(client))
    return other


def logged_in(client) -> bool:
    response = client.get("/password")
    assert response.status_code in (200, 302), response.status_code
    return response.status_code == 200


@pytest.fixture
def login(auth):
    """Return login(client, identifier, password): log a client in through the form."""
    return lambda client, identifier, password: auth.on(client).login(identifier, password)


@pytest.fixture
def change(submit):
    """Return change(client, current, new): submit the password change form."""

    def post(client, current, new):
        return submit(client, "/password", {"current_password": current, "new_password": new, "confirm": new})

    return post


# -- what the cookie holds


def test_the_cookie_holds_a_random_id_and_nothing_of_the_person(client, make_person, reset_flow, login):
    person = make_person()
    reset_flow.open(reset_flow.link(person.uid))  # the link's token is now held in the session
    ids = [session_id(client)]
    login(client, person.uid, person.password)
    ids.append(session_id(client))
    for value in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value), value
        decoded = base64.urlsafe_b64decode(value + "=")
        for secret in (person.uid, person.dn, *person.mail, *person.recovery, "reset", "login"):
            assert secret.encode() not in decoded and secret not in value


def test_the_cookie_is_named_and_scoped_by_the_public_url(server_settings):
    for public_url, path in (("https://pwdrst.uni.example/pwdrst", "/pwdrst"), ("https://pwdrst.uni.example", "/")):
        settings = server_settings(PUBLIC_URL=public_url)
        del settings["SESSION_COOKIE_PATH"]
        client = create_app(settings).test_client()
        cookie = client.get("/reset", base_url=public_url + "/").headers["Set-Cookie"]
        assert cookie.startswith(COOKIE + "=")
        assert f"Path={path};" in cookie or cookie.endswith(f"Path={path}")


# -- ended on the server


def test_a_cookie_copied_before_logout_gets_the_login_page(app, client, make_person, login, submit):
    person = make_person()
    login(client, person.uid, person.password)
    copy = copy_of(app, client)
    assert logged_in(copy)
    submit(client, "/logout", {}, form_url="/password")
    response = copy.get("/password")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_login_moves_the_session_to_a_new_id(app, client, make_person, login):
    person = make_person()
    client.get("/login")
    before = session_id(client)
    login(client, person.uid, person.password)
    after = session_id(client)
    assert before and after and before != after
    assert app.session_interface._retrieve_session_data("pwdrst:session:" + before) is None
    assert not logged_in(copy_of_id(app, before))
    assert logged_in(client)


def copy_of_id(app, value):
    other = app.test_client()
    other.set_cookie(COOKIE, value)
    return other


def test_a_new_role_moves_the_session_to_a_new_id(app, client, slapd, make_person, login):
    person = make_person()
    login(client, person.uid, person.password)
    before = session_id(client)
    group = app.config["LDAP_HELPDESK_GROUP"]
    slapd.modify(f"dn: {group}\nchangetype: modify\nadd: member\nmember: {person.dn}\n")
    try:
        assert client.get("/helpdesk/").status_code == 200
        assert session_id(client) != before
        assert not logged_in(copy_of_id(app, before))
    finally:
        slapd.modify(f"dn: {group}\nchangetype: modify\ndelete: member\nmember: {person.dn}\n")


def test_a_change_posted_and_redirected_reads_no_group_and_the_next_page_reads_them_live(
    app, client, make_person, login, csrf_token, searches, new_password
):
    person = make_person()
    login(client, person.uid, person.password)
    token = csrf_token(client.get("/password"))
    groups = {app.config["LDAP_HELPDESK_GROUP"], app.config["LDAP_ADMIN_GROUP"]}
    searches.clear()
    form = {"csrf_token": token, "current_password": person.password, "new_password": new_password}
    response = client.post("/password", data={**form, "confirm": new_password})
    assert response.status_code == 303
    assert searches and not groups & set(searches)  # the person, read before and after; no group
    searches.clear()
    assert client.get(response.headers["Location"]).status_code == 200  # its menu asks for the roles
    assert groups <= set(searches)


def test_a_password_change_ends_every_other_session_of_the_account(
    app, client, make_person, login, change, new_password
):
    person = make_person()
    other = app.test_client()
    login(client, person.uid, person.password)
    login(other, person.uid, person.password)
    assert change(client, person.password, new_password).headers["Location"] == "/password/changed"
    assert logged_in(client)
    response = other.get("/password")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_a_reset_by_link_ends_the_sessions_of_the_account(app, client, make_person, login, reset_flow):
    person = make_person()
    login(client, person.uid, person.password)
    stranger = app.test_client()
    link = reset_flow.link(person.uid, client=stranger)
    assert reset_flow.set_password(link, client=stranger).status_code == 303
    assert not logged_in(client)


def test_the_expired_path_change_ends_the_other_sessions(app, client, slapd, make_person, login, change, new_password):
    policy = slapd.add_policy("sessions-expired", pwdMaxAge=60, pwdGraceAuthNLimit=3)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    other = app.test_client()
    login(client, person.uid, person.password)
    login(other, person.uid, person.password)
    assert change(client, person.password, new_password).headers["Location"] == "/password/changed"
    assert client.get("/recovery").status_code == 200  # out of the must-change state, still logged in
    assert other.get("/password").headers["Location"].startswith("/login")


def test_a_change_made_in_the_directory_ends_the_session_at_the_next_sensitive_action(
    app, client, make_person, login, submit
):
    person = make_person()
    login(client, person.uid, person.password)
    with app.app_context():
        directory = app.extensions["pwdrst.directory"]
        directory.reset_password(directory.find_account(person.uid), "Zmienione-w-katalogu-bez-pwdrst-7")
    response = submit(client, "/recovery", {"address": "nowy@private.example"}, form_url="/reset")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert not logged_in(client)


@pytest.mark.parametrize("config_overrides", [{"SESSION_IDLE_TIMEOUT": 4}])
def test_an_idle_session_ends(client, make_person, login, config_overrides):
    person = make_person()
    login(client, person.uid, person.password)
    assert logged_in(client)  # within the idle time, even on a busy machine
    time.sleep(5)  # idle: this is what the test is about, not a wait for something to happen
    assert not logged_in(client)


@pytest.mark.parametrize("config_overrides", [{"SESSION_MAX_AGE": 2}])
def test_activity_does_not_extend_the_absolute_lifetime(client, make_person, login, wait_until, config_overrides):
    person = make_person()
    login(client, person.uid, person.password)
    # Busy all along, well within the idle timeout: the session still ends.
    wait_until(lambda: not logged_in(client), "the session outlived SESSION_MAX_AGE", timeout=30)


def test_replaying_an_older_cookie_never_shows_a_shown_once_link_again(app, client, make_person, login, submit):
    login(client, STAFF.uid, STAFF.password)
    person = make_person()
    form = f"/helpdesk/account/{person.uid}"
    response = submit(client, f"{form}/link", {"delivery": "shown", "identity_checked": "y"}, form_url=form)
    copy = copy_of(app, client)  # taken while the link waits in the session
    assert "/reset/" in client.get(response.headers["Location"]).get_data(as_text=True)
    replay = copy.get(response.headers["Location"])
    assert replay.status_code == 410
    assert "/reset/" not in replay.get_data(as_text=True)


# -- Redis


def test_app_servers_share_sessions_and_their_end_through_redis(
    make_app, make_person, redis_server, login, change, submit, new_password
):
    _, uri = redis_server
    first, second = (make_app(SESSION_STORAGE_URI=uri) for _ in range(2))
    person = make_person()
    client = first.test_client()
    login(client, person.uid, person.password)
    assert redis.Redis.from_url(uri).exists("pwdrst:session:" + session_id(client))
    elsewhere = copy_of(second, client)
    other = second.test_client()
    login(other, person.uid, person.password)
    assert logged_in(elsewhere)  # the second app server knows the first one's session
    assert change(other, person.password, new_password).headers["Location"] == "/password/changed"
    assert not logged_in(client)
    assert logged_in(other)
    submit(other, "/logout", {}, form_url="/password")
    assert not logged_in(copy_of(first, other))


def test_an_ended_id_stays_ended_in_redis_even_if_a_racing_request_writes_it_back(
    make_app, make_person, redis_server, login, submit
):
    _, uri = redis_server
    app = make_app(SESSION_STORAGE_URI=uri)
    person = make_person()
    client = app.test_client()
    login(client, person.uid, person.password)
    store = redis.Redis.from_url(uri)
    key = "pwdrst:session:" + session_id(client)
    saved = store.get(key)
    copy = copy_of(app, client)
    submit(client, "/logout", {}, form_url="/password")
    assert not store.exists(key)
    store.set(key, saved)  # a request that loaded the session before the logout saves it back
    assert not logged_in(copy)


# -- settings and start-up


@pytest.mark.parametrize(
    "key, value",
    [("SESSION_STORAGE_URI", "http://redis.example"), ("SESSION_DIRECTORY", "relative"), ("SESSION_MAX_AGE", 0)],
)
def test_invalid_session_settings_are_named(server_settings, key, value):
    with pytest.raises(config.ConfigError, match=key):
        create_app(server_settings(**{key: value}))


def test_a_session_directory_others_may_read_is_refused(server_settings, tmp_path):
    shared = tmp_path / "sessions"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(config.ConfigError, match="SESSION_DIRECTORY"):
        create_app(server_settings(SESSION_DIRECTORY=str(shared)))
    private = tmp_path / "private"
    create_app(server_settings(SESSION_DIRECTORY=str(private)))
    assert private.stat().st_mode & 0o777 == 0o700


@pytest.fixture
def start_gunicorn(server_settings, environment, project_root):
    """Return start_gunicorn(workers, **env): gunicorn as the README runs it, and its port."""

    def start(workers, **extra):
        port = free_port()
        env = environment(
            server_settings(), PWDRST_GUNICORN_BIND=f"127.0.0.1:{port}", PWDRST_GUNICORN_WORKERS=str(workers), **extra
        )
        return _popen(env, project_root), port

    return start


def _popen(env, root):
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_several_workers_with_limits_in_memory_refuse_to_start(start_gunicorn):
    process, _ = start_gunicorn(2, PWDRST_RATELIMIT_STORAGE_URI="memory://")
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "RATELIMIT_STORAGE_URI is memory://" in output and "redis://" in output


def test_several_workers_start_with_limits_and_sessions_in_redis(start_gunicorn, redis_server):
    _, uri = redis_server
    process, port = start_gunicorn(
        2, PWDRST_RATELIMIT_STORAGE_URI=uri, PWDRST_SESSION_STORAGE_URI=uri, PWDRST_GUNICORN_THREADS="2"
    )
    try:
        wait_for_port(port, timeout=30)
        assert process.poll() is None
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "RATELIMIT_STORAGE_URI" not in output
