"""Outages seen through the pages: the directory stopped, restarted, failed over or hung; SMTP down."""

import socket

import pytest

from pwdrst import sandbox
from pwdrst.links import make_token
from pwdrst.sandbox import free_port

JAN = sandbox.SAMPLE_PEOPLE[0]
STRONG = "Zielony-parasol-nad-rzeka-9"
STAFF = sandbox.SAMPLE_PEOPLE[3]


@pytest.fixture
def app_for(make_app):
    """Return app_for(ldap_urls, **overrides): an app with these directory servers and a 1 s LDAP timeout."""
    return lambda urls, **overrides: make_app(LDAP_URL=urls, LDAP_TIMEOUT=1, **overrides)


def directory_pages(client, token, link_token):
    """Exercise every page that needs the directory; return (what, status, body) for each."""
    answers = []
    for what, call in (
        ("reset request", lambda: client.post("/reset", data={"csrf_token": token, "identifier": JAN.uid})),
        ("link", lambda: client.get("/reset/" + link_token)),
        ("login", lambda: client.post("/login", data={"csrf_token": token, "identifier": JAN.uid, "password": "x"})),
        (
            "password change",
            lambda: client.post(
                "/password",
                data={"csrf_token": token, "current_password": "x", "new_password": STRONG, "confirm": STRONG},
            ),
        ),
        ("recovery page", lambda: client.get("/recovery")),
        ("helpdesk", lambda: client.get("/helpdesk/?q=kowal")),
        ("healthz", lambda: client.get("/healthz")),
    ):
        response = call()
        answers.append((what, response.status_code, response.get_data(as_text=True)))
    return answers


def test_stopped_directory_gives_503_pages_in_the_persons_language(own_slapd, app_for, auth, csrf_token, smtp):
    app = app_for([own_slapd.url])
    client = app.test_client()
    assert auth.on(client).login(STAFF.uid, STAFF.password).status_code == 303  # logged in while it was up
    with app.app_context():
        account = app.extensions["pwdrst.directory"].find_account(JAN.uid)
        link_token = make_token("reset", account.login, account.fingerprint)
    token = csrf_token(client.get("/reset"))
    own_slapd.stop()
    answers = directory_pages(client, token, link_token)
    for what, status, body in answers:
        assert status == 503, what
        if what != "healthz":
            assert "Katalog kont nie odpowiada" in body, what
    english = client.get("/recovery", headers={"Accept-Language": "en"})
    assert english.status_code == 503
    assert "The account directory is not answering right now" in english.get_data(as_text=True)
    assert smtp.delivered(app) == []  # nothing was sent (and nothing could be written)


def test_restarted_directory_is_used_without_restarting_the_app(own_slapd, app_for, auth):
    client = app_for([own_slapd.url]).test_client()
    assert client.get("/healthz").status_code == 200
    own_slapd.stop()
    assert client.get("/healthz").status_code == 503
    own_slapd.start()
    assert client.get("/healthz").status_code == 200
    assert auth.on(client).login(JAN.uid, JAN.password).status_code == 303


def test_first_server_stopped_requests_go_through_the_second(slapd, app_for, auth, reset_flow):
    client = app_for([f"ldap://127.0.0.1:{free_port()}", slapd.url]).test_client()
    assert auth.on(client).login(JAN.uid, JAN.password).status_code == 303
    assert client.get("/password").status_code == 200
    assert reset_flow.request(JAN.mail[0], client=client).status_code == 303


def test_hung_directory_fails_with_503_within_the_timeout(app_for, csrf_token, bounded):
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)  # the kernel accepts; nobody ever reads or answers
        client = app_for([f"ldap://127.0.0.1:{hung.getsockname()[1]}"]).test_client()
        # LDAP_TIMEOUT must end each wait: bounded() fails the test if an answer never comes.
        assert bounded(client.get, "/healthz").status_code == 503
        assert bounded(client.get, "/helpdesk/?q=x").status_code == 302  # to the login page, asking nothing
        token = csrf_token(client.get("/reset"))
        response = bounded(client.post, "/reset", data={"csrf_token": token, "identifier": JAN.uid})
        assert response.status_code == 503
        assert "Katalog kont nie odpowiada" in response.get_data(as_text=True)


# -- mail


def test_smtp_down_then_back_delivers_the_mail(smtp, reset_flow, make_person, caplog, wait_until):
    person = make_person()
    smtp.stop()
    assert reset_flow.request(person.uid).status_code == 303
    wait_until(lambda: "failed (attempt 2" in caplog.text, "no retry failed while SMTP was down")
    smtp.start()
    assert smtp.wait_for(1, timeout=15)[0]["X-Envelope-To"] == person.recovery[0]
