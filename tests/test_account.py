"""Log in, change the password, keep a recovery address: against the real slapd and SMTP server."""

import time

import ldap3
import pytest

from pwdrst import create_app, sandbox
from tests.conftest import audit_events, base_config, link_path, mail_link, mail_text, submit
from tests.test_reset import can_bind

NEW = "Gorski-potok-i-stary-mlyn-12"


def login(client, identifier, password, **kwargs):
    return submit(client, "/login", {"identifier": identifier, "password": password}, **kwargs)


def change(client, current, new, confirm=None):
    return submit(client, "/password", {"current_password": current, "new_password": new, "confirm": confirm or new})


def add_recovery(client, person, address, password=None, **extra):
    """Ask for a new recovery address on /recovery, with the current password (the person's own by default)."""
    data = {"address": address, "current_password": person.password if password is None else password, **extra}
    return submit(client, "/recovery", data)


def remove_recovery(client, person, index=0, password=None, **extra):
    """Remove a recovery address from its own page, with the current password (the person's own by default)."""
    data = {"index": str(index), "current_password": person.password if password is None else password, **extra}
    return submit(client, "/recovery/remove", data, form_url="/recovery")


def failure_count(slapd, dn) -> int:
    conn = ldap3.Connection(ldap3.Server(slapd.url), sandbox.ADMIN_DN, sandbox.ADMIN_PASSWORD, auto_bind=True)
    conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["pwdFailureTime"])
    count = len(conn.entries[0].pwdFailureTime.values) if conn.entries else 0
    conn.unbind()
    return count


# -- logging in


def test_login_with_the_uid_and_with_each_alias(client, make_person):
    person = make_person()
    for identifier in (person.uid, *person.mail, person.mail[0].upper()):
        response = login(client, identifier, person.password)
        assert response.status_code == 303, identifier
        assert response.headers["Location"] == "/password"
        assert f"Zalogowano jako {person.uid}" in client.get("/password").get_data(as_text=True)
        submit(client, "/logout", {}, form_url="/password")


def test_wrong_password_shows_the_seed_message(client, make_person):
    person = make_person()
    response = login(client, person.uid, "wrong-password")
    page = response.get_data(as_text=True)
    assert response.status_code == 401
    assert "Niepoprawne dane logowania" in page
    assert "w haśle ważna jest wielkość liter" in page and "Caps Lock" in page


def test_wrong_password_in_english(client, make_person):
    person = make_person()
    page = login(client, person.uid, "wrong-password", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Invalid login or password" in page
    assert "Passwords are case-sensitive" in page


def test_unknown_login_answers_exactly_like_a_wrong_password(client, make_person):
    import re

    person = make_person()
    known = login(client, person.uid, "wrong-password")
    unknown = login(client, "nobody-at-all", "wrong-password")

    def scrub(html):
        return (
            re.sub(r'(csrf[-_]token"[^>]*(?:value|content)=")[^"]+', r"\1", html)
            .replace(person.uid, "X")
            .replace("nobody-at-all", "X")
        )

    assert known.status_code == unknown.status_code == 401
    assert scrub(known.get_data(as_text=True)) == scrub(unknown.get_data(as_text=True))


def test_locked_account_shows_the_locked_message(client, slapd, make_person):
    person = make_person()
    for _ in range(sandbox.POLICY_MAX_FAILURE):
        can_bind(slapd, person.dn, "wrong-password")
    response = login(client, person.uid, person.password)
    page = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "Twoje konto jest zablokowane" in page
    assert 'href="/reset"' in page and "pomoc@uni.example" in page


def test_shared_address_asks_for_the_helpdesk(client):
    page = login(client, "t.lewandowski@uni.example", "Lampa-w-oknie-na-strychu-88").get_data(as_text=True)
    assert "Ten adres należy do więcej niż jednego konta" in page


def test_directory_outage_on_login_is_a_503(slapd, smtp):
    from pwdrst.sandbox import free_port

    app = create_app(base_config(slapd, smtp, LDAP_URL=[f"ldap://127.0.0.1:{free_port()}"]))
    response = login(app.test_client(), "jkowalski", "whatever-password")
    assert response.status_code == 503
    assert "Katalog kont nie odpowiada" in response.get_data(as_text=True)


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_LOGIN_ACCOUNT": "3 per 15 minutes"}])
def test_failed_login_limit_stops_the_next_attempt_before_the_directory(client, slapd, make_person, config_overrides):
    person = make_person()
    for _ in range(3):
        assert login(client, person.uid, "wrong-password").status_code == 401
    assert failure_count(slapd, person.dn) == 3
    # Even the right password is not tried: the directory never sees the attempt.
    limited = login(client, person.uid, person.password)
    assert limited.status_code == 429
    assert "Zbyt wiele nieudanych prób" in limited.get_data(as_text=True)
    login(client, person.uid, "wrong-again")
    assert failure_count(slapd, person.dn) == 3


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_LOGIN_ADDRESS": "2 per 15 minutes"}])
def test_failed_login_limit_per_client_address(client, make_person, config_overrides):
    first, second = make_person(), make_person()
    login(client, first.uid, "wrong-password")
    login(client, second.uid, "wrong-password")
    assert login(client, first.uid, first.password).status_code == 429


def test_login_renews_the_session(client, make_person):
    from tests.conftest import csrf_token

    person = make_person()
    before = csrf_token(client.get("/login").get_data(as_text=True))
    login(client, person.uid, person.password)
    after = csrf_token(client.get("/password").get_data(as_text=True))
    assert before != after


def test_session_cookie_flags(client, make_person):
    person = make_person()
    response = login(client, person.uid, person.password)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie  # PUBLIC_URL is https


def test_login_page_never_redirects_off_site(client, make_person):
    person = make_person()
    response = submit(client, "/login?next=//evil.example/x", {"identifier": person.uid, "password": person.password})
    assert response.headers["Location"] == "/password"


# -- expired passwords: the must-change path


def test_expired_password_without_grace_reaches_only_the_change_form(client, slapd, make_person, caplog):
    policy = slapd.add_policy("app-expired-nograce", pwdMaxAge=60, pwdGraceAuthNLimit=0)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    response = login(client, person.uid, person.password)
    assert response.headers["Location"] == "/password"
    assert client.get("/recovery").headers["Location"] == "/password"
    assert "Twoje hasło wygasło" in client.get("/password").get_data(as_text=True)
    done = change(client, person.password, NEW)
    assert done.headers["Location"] == "/password/changed"
    assert can_bind(slapd, person.dn, NEW)
    assert client.get("/recovery").status_code == 200  # no longer confined
    [event] = [e for e in audit_events(caplog, "password_changed") if e["outcome"] == "ok"]
    assert event["expired_password"] is True


def test_expired_password_with_grace_logins_is_changed_by_the_person(client, slapd, make_person, caplog):
    policy = slapd.add_policy("app-expired-grace", pwdMaxAge=60, pwdGraceAuthNLimit=3)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    login(client, person.uid, person.password)
    assert "pozostałe logowania awaryjne: 2" in client.get("/password").get_data(as_text=True)
    assert change(client, person.password, NEW).headers["Location"] == "/password/changed"
    assert can_bind(slapd, person.dn, NEW)
    [event] = [e for e in audit_events(caplog, "password_changed") if e["outcome"] == "ok"]
    assert event["expired_password"] is False


def test_wrong_password_on_an_expired_account_is_still_wrong(client, slapd, make_person):
    policy = slapd.add_policy("app-expired-wrong", pwdMaxAge=60, pwdGraceAuthNLimit=0)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    assert login(client, person.uid, "wrong-password").status_code == 401


def test_password_expiring_soon_is_announced_after_login(client, slapd, make_person):
    from datetime import UTC, datetime, timedelta

    policy = slapd.add_policy("app-expiring", pwdMaxAge=10 * 86400, pwdExpireWarning=5 * 86400)
    person = make_person()
    nine_days_ago = (datetime.now(UTC) - timedelta(days=9)).strftime("%Y%m%d%H%M%SZ")
    slapd.expire_password(person.dn, policy, changed=nine_days_ago)
    login(client, person.uid, person.password)
    assert "Twoje hasło wygaśnie za 1 dzień." in client.get("/password").get_data(as_text=True)


# -- changing the password


def test_change_lets_the_person_bind_with_the_new_password_only(client, slapd, smtp, make_person):
    person = make_person()
    login(client, person.uid, person.password)
    response = change(client, person.password, NEW)
    assert response.status_code == 303
    page = client.get("/password/changed").get_data(as_text=True)
    assert "Poczta i logowanie jednokrotne (SSO) przyjmują już nowe hasło" in page
    assert can_bind(slapd, person.dn, NEW)
    assert not can_bind(slapd, person.dn, person.password)
    assert client.get("/password").status_code == 200  # the session continues


def test_notification_mail_arrives_after_a_change(client, smtp, make_person):
    person = make_person()
    login(client, person.uid, person.password)
    change(client, person.password, NEW)
    [notice] = smtp.wait_for(1)
    assert set(notice["X-Envelope-To"].split(", ")) == set(person.mail + person.recovery)
    assert person.uid in mail_text(notice) and NEW not in mail_text(notice)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("wrong_current", "Obecne hasło jest niepoprawne."),
        ("too_short", "Użyj co najmniej 15 znaków"),
        ("same", "Nowe hasło musi się różnić od obecnego."),
        ("history", "To hasło było już używane"),
        ("mismatch", "Wpisane hasła nie są takie same."),
        ("too_long", "Użyj najwyżej 128 znaków (to hasło ma ich 129)."),
        ("huge", "Użyj najwyżej 128 znaków (to hasło ma ich 100000)."),
    ],
)
def test_each_refusal_has_its_own_message_and_changes_nothing(client, slapd, make_person, case, expected):
    person = make_person()
    login(client, person.uid, person.password)
    current = person.password
    if case == "history":
        change(client, current, NEW)
        current = NEW
        response = change(client, current, person.password)
    else:
        new = {
            "wrong_current": NEW,
            "too_short": "krotkie-haslo",
            "same": person.password,
            "mismatch": NEW,
            "too_long": "x" * 129,
            "huge": "x" * 100_000,
        }[case]
        response = change(
            client,
            "not-the-password" if case == "wrong_current" else current,
            new,
            confirm=NEW + "x" if case == "mismatch" else None,
        )
    assert response.status_code == 400
    assert expected in response.get_data(as_text=True)
    assert can_bind(slapd, person.dn, current)


def test_change_too_recent_is_refused_with_its_message(client, slapd, make_person):
    policy = slapd.add_policy("app-min-age", pwdMinAge=3600, pwdInHistory=5)
    person = make_person()
    slapd.set_policy(person.dn, policy)
    login(client, person.uid, person.password)
    change(client, person.password, NEW)
    response = change(client, NEW, "Inne-haslo-z-nad-morza-77")
    assert "Hasło zostało zmienione zbyt niedawno" in response.get_data(as_text=True)
    assert can_bind(slapd, person.dn, NEW)


def test_change_form_fields_are_in_order(client, make_person):
    person = make_person()
    login(client, person.uid, person.password)
    page = client.get("/password").get_data(as_text=True)
    positions = [page.index(f'id="{name}"') for name in ("current_password", "new_password", "confirm")]
    assert positions == sorted(positions)
    assert "Jak wybrać nowe hasło" in page
    assert client.get("/password").headers["Cache-Control"] == "no-store"


# -- sessions


def test_password_page_without_a_session_goes_to_login(client):
    response = client.get("/password")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/password")


def test_session_ends_at_logout(client, make_person):
    person = make_person()
    login(client, person.uid, person.password)
    response = submit(client, "/logout", {}, form_url="/password")
    assert response.status_code == 303
    assert client.get("/password").status_code == 302


def test_logout_needs_post_and_csrf(client, make_person):
    person = make_person()
    login(client, person.uid, person.password)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/password").status_code == 200


@pytest.mark.parametrize("config_overrides", [{"SESSION_IDLE_TIMEOUT": 1}])
def test_session_ends_after_the_idle_timeout(client, make_person, config_overrides):
    person = make_person()
    login(client, person.uid, person.password)
    assert client.get("/password").status_code == 200
    time.sleep(2.2)
    assert client.get("/password").status_code == 302


# -- recovery addresses


@pytest.mark.parametrize("config_overrides", [{"RECOVERY_FORBIDDEN_DOMAINS": ["uni.example"]}])
def test_confirmed_recovery_address_is_stored_only_after_the_link(client, app, smtp, make_person, config_overrides):
    person = make_person()
    login(client, person.uid, person.password)
    response = add_recovery(client, person, "nowy.prywatny@mail.example")
    assert response.status_code == 303
    [message] = smtp.wait_for(1, to="nowy.prywatny@mail.example")
    with app.app_context():
        directory = app.extensions["pwdrst.directory"]
        assert directory.get_account(person.uid).recovery_addresses == person.recovery  # not yet
    stranger = app.test_client()  # opened on a phone, not logged in
    opened = stranger.get(link_path(mail_link(message)))
    assert opened.headers["Location"] == "/recovery/confirm"
    assert "nowy.prywatny@mail.example" in stranger.get("/recovery/confirm").get_data(as_text=True)
    with app.app_context():
        assert directory.get_account(person.uid).recovery_addresses == person.recovery  # GET changes nothing
    confirmed = submit(stranger, "/recovery/confirm", {})
    assert "Adres awaryjny zapisany" in confirmed.get_data(as_text=True)
    with app.app_context():
        assert set(directory.get_account(person.uid).recovery_addresses) == {
            *person.recovery,
            "nowy.prywatny@mail.example",
        }
    [notice] = smtp.wait_for(1, to=person.recovery[0])
    assert "zostały zmienione" in mail_text(notice)


def test_unconfirmed_recovery_address_is_not_stored(client, app, smtp, make_person):
    person = make_person()
    login(client, person.uid, person.password)
    add_recovery(client, person, "nigdy.potwierdzony@mail.example")
    smtp.wait_for(1)
    with app.app_context():
        assert app.extensions["pwdrst.directory"].get_account(person.uid).recovery_addresses == person.recovery


def test_replacing_the_recovery_address(client, app, smtp, make_person):
    person = make_person()
    login(client, person.uid, person.password)
    add_recovery(client, person, "zastepczy@mail.example", replace="y")
    link = mail_link(smtp.wait_for(1, to="zastepczy@mail.example")[0])
    client.get(link_path(link))
    submit(client, "/recovery/confirm", {})
    with app.app_context():
        assert app.extensions["pwdrst.directory"].get_account(person.uid).recovery_addresses == (
            "zastepczy@mail.example",
        )
    # The same link cannot be used again: the addresses changed.
    client.get(link_path(link))
    assert client.get("/recovery/confirm").status_code == 400


@pytest.mark.parametrize("config_overrides", [{"RECOVERY_FORBIDDEN_DOMAINS": ["uni.example"]}])
@pytest.mark.parametrize("address", ["ktos@uni.example", "ktos@student.uni.example", "KTOS@UNI.EXAMPLE"])
def test_address_in_the_organisations_domain_is_refused(client, smtp, make_person, config_overrides, address):
    person = make_person()
    login(client, person.uid, person.password)
    response = add_recovery(client, person, address)
    assert response.status_code == 400
    assert "Użyj prywatnego adresu spoza uczelni" in response.get_data(as_text=True)
    time.sleep(0.2)
    assert smtp.messages == []


@pytest.mark.parametrize("address", ["ktos.inny@uni.example", "ktos@poczta.uni.example", "ktos@STUDENT.uni.example"])
def test_address_in_the_accounts_own_domains_is_refused_by_default(client, smtp, make_person, address):
    person = make_person(mail=("ewa.wlasna@uni.example", "ewa.wlasna@student.uni.example"))
    login(client, person.uid, person.password)
    response = add_recovery(client, person, address)
    assert response.status_code == 400
    assert "Użyj prywatnego adresu spoza uczelni" in response.get_data(as_text=True)
    time.sleep(0.3)
    assert smtp.messages == []


def test_own_university_address_is_refused_as_recovery(client, smtp, make_person):
    person = make_person()
    login(client, person.uid, person.password)
    assert add_recovery(client, person, person.mail[1]).status_code == 400


@pytest.mark.parametrize("address", ["not-an-address", "a@b", "x" * 300 + "@mail.example", "a b@mail.example"])
def test_malformed_recovery_address_is_refused(client, make_person, address):
    person = make_person()
    login(client, person.uid, person.password)
    assert add_recovery(client, person, address).status_code == 400


def test_recovery_page_masks_the_addresses(client, make_person):
    person = make_person()
    login(client, person.uid, person.password)
    page = client.get("/recovery").get_data(as_text=True)
    assert person.recovery[0] not in page
    assert "***@private.example" in page


def test_removing_the_last_recovery_address_asks_first(client, app, smtp, make_person):
    person = make_person()
    login(client, person.uid, person.password)
    asked = submit(client, "/recovery/remove", {"index": "0"}, form_url="/recovery")
    assert asked.status_code == 200
    page = asked.get_data(as_text=True)
    assert "nie ustawisz sam nowego hasła" in page and 'id="current_password"' in page
    unconfirmed = remove_recovery(client, person)
    assert unconfirmed.status_code == 400
    with app.app_context():
        assert app.extensions["pwdrst.directory"].get_account(person.uid).recovery_addresses == person.recovery
    removed = remove_recovery(client, person, confirm="y")
    assert removed.status_code == 303
    with app.app_context():
        assert app.extensions["pwdrst.directory"].get_account(person.uid).recovery_addresses == ()
    [notice] = smtp.wait_for(1, to=person.recovery[0])
    assert "nie będzie już otrzymywać" in mail_text(notice)


@pytest.mark.parametrize("action", ["add", "replace", "remove"])
@pytest.mark.parametrize("password", ["not-the-password", ""])
def test_changing_the_recovery_address_needs_the_current_password(client, app, smtp, make_person, action, password):
    person = make_person()
    login(client, person.uid, person.password)
    if action == "remove":
        response = remove_recovery(client, person, password=password, confirm="y")
    else:
        extra = {"replace": "y"} if action == "replace" else {}
        response = add_recovery(client, person, "inny.prywatny@mail.example", password=password, **extra)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    expected = "Obecne hasło jest niepoprawne." if password else "Wpisz obecne hasło."
    errors = page[page.index('id="current_password-errors"') :]
    assert expected in errors[: errors.index("</ul>")]
    time.sleep(0.3)
    assert smtp.messages == []
    with app.app_context():
        assert app.extensions["pwdrst.directory"].get_account(person.uid).recovery_addresses == person.recovery


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_LOGIN_ACCOUNT": "3 per 15 minutes"}])
def test_wrong_password_for_the_recovery_address_counts_as_a_failed_login(
    client, app, slapd, smtp, make_person, caplog, config_overrides
):
    person = make_person()
    login(client, person.uid, person.password)
    for _ in range(3):
        assert add_recovery(client, person, "inny@mail.example", password="not-the-password").status_code == 400
    assert failure_count(slapd, person.dn) == 3  # the directory's own policy counted each bind
    # The budget is the login's: even the right password is not tried now, here or at the login.
    assert add_recovery(client, person, "inny@mail.example").status_code == 429
    assert login(app.test_client(), person.uid, person.password).status_code == 429
    time.sleep(0.3)
    assert smtp.messages == []
    outcomes = [e["outcome"] for e in audit_events(caplog, "reauthentication")]
    assert outcomes == ["failed"] * 3 + ["limited"]
    assert person.password not in caplog.text


def test_reset_link_dies_when_the_recovery_address_is_replaced(client, app, smtp, make_person):
    from tests.test_reset import request_reset

    person = make_person()
    request_reset(app.test_client(), person.uid)
    [old_mail] = smtp.wait_for(1, to=person.recovery[0])
    reset_link = mail_link(old_mail)
    login(client, person.uid, person.password)
    assert add_recovery(client, person, "nowy.jedyny@mail.example", replace="y").status_code == 303
    confirmation = mail_link(smtp.wait_for(1, to="nowy.jedyny@mail.example")[0])
    client.get(link_path(confirmation))
    assert "Adres awaryjny zapisany" in submit(client, "/recovery/confirm", {}).get_data(as_text=True)
    refused = app.test_client().get(link_path(reset_link))
    assert refused.status_code == 410


@pytest.mark.parametrize("index", ["5", "-1", "abc", ""])
def test_removing_a_nonexistent_recovery_address_is_a_400(client, make_person, index):
    person = make_person()
    login(client, person.uid, person.password)
    assert submit(client, "/recovery/remove", {"index": index}, form_url="/recovery").status_code == 400


def test_recovery_confirmation_token_forged_or_missing(client):
    assert client.get("/recovery/confirm").status_code == 400
    client.get("/recovery/forged.token.value")
    assert client.get("/recovery/confirm").status_code == 400


def test_audit_of_login_and_change(client, make_person, caplog):
    person = make_person()
    login(client, person.uid, "wrong-password")
    login(client, person.uid, person.password)
    change(client, person.password, "short")
    change(client, person.password, NEW)
    logins = audit_events(caplog, "login")
    assert [(e["outcome"], e.get("reason")) for e in logins] == [("failed", "invalid_credentials"), ("ok", None)]
    changes = audit_events(caplog, "password_changed")
    assert [(e["outcome"], e.get("reason")) for e in changes] == [("refused", "policy"), ("ok", None)]
    assert person.password not in caplog.text and NEW not in caplog.text
