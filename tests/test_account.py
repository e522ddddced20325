"""Log in, change the password, keep a recovery address: against the real slapd and SMTP server."""

from datetime import UTC, datetime, timedelta

import ldap3
import pytest

from pwdrst import sandbox

NEW = "Gorski-potok-i-stary-mlyn-12"


@pytest.fixture
def change(client, submit):
    """Return change(current, new, confirm=None): submit the password change form."""

    def post(current, new, confirm=None):
        data = {"current_password": current, "new_password": new, "confirm": confirm or new}
        return submit(client, "/password", data)

    return post


@pytest.fixture
def recovery_addresses(app):
    """Return recovery_addresses(login): the recovery addresses the directory holds for an account now."""

    def read(login):
        with app.app_context():
            return app.extensions["pwdrst.directory"].get_account(login).recovery_addresses

    return read


@pytest.fixture
def add_recovery(submit):
    """Return add_recovery(client, person, address, password=None, **extra): ask for a new recovery address."""

    def add(client, person, address, password=None, **extra):
        data = {"address": address, "current_password": person.password if password is None else password, **extra}
        return submit(client, "/recovery", data)

    return add


@pytest.fixture
def remove_recovery(submit):
    """Return remove_recovery(client, person, index=0, password=None, **extra): remove a recovery address."""

    def remove(client, person, index=0, password=None, **extra):
        data = {"index": str(index), "current_password": person.password if password is None else password, **extra}
        return submit(client, "/recovery/remove", data, form_url="/recovery")

    return remove


def failure_count(slapd, dn) -> int:
    conn = ldap3.Connection(ldap3.Server(slapd.url), sandbox.ADMIN_DN, sandbox.ADMIN_PASSWORD, auto_bind=True)
    conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["pwdFailureTime"])
    count = len(conn.entries[0].pwdFailureTime.values) if conn.entries else 0
    conn.unbind()
    return count


# -- logging in


def test_login_with_the_uid_and_with_each_alias(client, make_person, auth):
    person = make_person()
    for identifier in (person.uid, *person.mail, person.mail[0].upper()):
        response = auth.login(identifier, person.password)
        assert response.status_code == 303, identifier
        assert response.headers["Location"] == "/password"
        assert f"Zalogowano jako {person.uid}" in client.get("/password").get_data(as_text=True)
        auth.logout()


def test_wrong_password_shows_the_seed_message(make_person, auth):
    person = make_person()
    response = auth.login(person.uid, "wrong-password")
    page = response.get_data(as_text=True)
    assert response.status_code == 401
    assert "Niepoprawne dane logowania" in page
    assert "w haśle ważna jest wielkość liter" in page and "Caps Lock" in page


def test_wrong_password_in_english(make_person, auth):
    person = make_person()
    page = auth.login(person.uid, "wrong-password", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Invalid login or password" in page
    assert "Passwords are case-sensitive" in page


def test_unknown_login_answers_exactly_like_a_wrong_password(make_person, auth, comparable):
    person = make_person()
    known = auth.login(person.uid, "wrong-password")
    unknown = auth.login("nobody-at-all", "wrong-password")
    assert known.status_code == unknown.status_code == 401
    known_body, unknown_body = comparable(known)[2], comparable(unknown)[2]
    assert known_body.replace(person.uid, "X") == unknown_body.replace("nobody-at-all", "X")


def test_login_with_a_wrong_password_and_an_unknown_account_is_indistinguishable(auth, make_person, comparable):
    person = make_person()
    wrong = auth.login(person.uid, "wrong-password")
    unknown = auth.login("nobody-here-at-all", "wrong-password")
    status, headers, body = comparable(wrong)
    assert (status, headers) == comparable(unknown)[:2]
    assert body.replace(person.uid, "X") == comparable(unknown)[2].replace("nobody-here-at-all", "X")


@pytest.fixture
def same_page(comparable):
    """Return same_page(a, spelling_a, b, spelling_b): whether two answers differ only in what was typed."""

    def same(first, typed_first, second, typed_second):
        status, headers, body = comparable(first)
        other_status, other_headers, other_body = comparable(second)
        return (status, headers, body.replace(typed_first, "X")) == (
            other_status,
            other_headers,
            other_body.replace(typed_second, "X"),
        )

    return same


@pytest.fixture
def shared_people(make_person):
    """Return shared_people(count, passwords=None): people who all hold one address besides their own (seed 3.4)."""
    serial = iter(range(1, 10**6))

    def make(count, passwords=None):
        shared = f"shared.{next(serial)}.{make_person().uid}@uni.example"
        people = []
        for n in range(count):
            password = passwords[n] if passwords else None
            mail = (f"own.{n}.{shared}", shared)
            people.append(make_person(surname="Wspolna", mail=mail, password=password))
        return shared, people

    return make


def test_locked_account_answers_exactly_like_a_wrong_password(make_person, auth, can_bind, same_page, audit):
    person = make_person()
    for _ in range(sandbox.POLICY_MAX_FAILURE):
        can_bind(person.dn, "wrong-password")
    locked = auth.login(person.uid, person.password)
    unknown = auth.login("nobody-at-all", "wrong-password")
    assert same_page(locked, person.uid, unknown, "nobody-at-all")
    assert locked.status_code == 401
    page = locked.get_data(as_text=True)
    assert "Ustawienie nowego hasła linkiem wysłanym na adres awaryjny także je odblokowuje" in page
    assert 'href="/reset"' in page and "pomoc@uni.example" in page
    assert [(e["account"], e["reason"]) for e in audit("login")] == [
        (person.uid, "locked"),
        (None, "invalid_credentials"),
    ]


def test_shared_address_logs_in_the_one_account_the_password_opens(client, auth, shared_people, audit):
    shared, (first, second) = shared_people(2)
    response = auth.login(shared, second.password)
    assert response.status_code == 303
    assert f"Zalogowano jako {second.uid}" in client.get("/password").get_data(as_text=True)
    assert [(e["outcome"], e["account"]) for e in audit("login")] == [("failed", first.uid), ("ok", second.uid)]


def test_shared_address_with_a_wrong_password_answers_like_a_wrong_password(auth, shared_people, same_page, audit):
    shared, people = shared_people(2)
    refused = auth.login(shared, "wrong-password")
    unknown = auth.login("nobody-at-all", "wrong-password")
    assert same_page(refused, shared, unknown, "nobody-at-all")
    assert [e["account"] for e in audit("login") if e["account"]] == [p.uid for p in people]


def test_shared_address_that_one_password_opens_twice_is_refused_and_audited(auth, shared_people, same_page, audit):
    same = "Jeden-klucz-do-dwoch-drzwi-7"
    shared, people = shared_people(2, passwords=[same, same])
    refused = auth.login(shared, same)
    unknown = auth.login("nobody-at-all", "wrong-password")
    assert same_page(refused, shared, unknown, "nobody-at-all")
    [fault] = [e for e in audit("login") if e.get("reason") == "ambiguous"]
    assert fault["accounts"] == [p.uid for p in people]


def test_address_shared_by_too_many_accounts_is_never_tried(auth, shared_people, failure_count):
    shared, people = shared_people(4)
    refused = auth.login(shared, people[0].password)
    assert refused.status_code == 401
    assert [failure_count(p.dn) for p in people] == [0, 0, 0, 0]


def test_failed_login_is_audited_with_the_account_it_targeted(auth, make_person, audit):
    person = make_person()
    auth.login(person.mail[1], "wrong-password")
    auth.login("nobody-at-all", "wrong-password")
    assert [(e["outcome"], e["account"], e["reason"]) for e in audit("login")] == [
        ("failed", person.uid, "invalid_credentials"),
        ("failed", None, "invalid_credentials"),
    ]


def test_directory_outage_on_login_is_a_503(pure_app, submit):
    data = {"identifier": "jkowalski", "password": "whatever-password"}
    response = submit(pure_app.test_client(), "/login", data)
    assert response.status_code == 503
    assert "Katalog kont nie odpowiada" in response.get_data(as_text=True)


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_LOGIN_ACCOUNT": "3 per 15 minutes"}])
def test_failed_login_limit_stops_the_next_attempt_before_the_directory(slapd, make_person, config_overrides, auth):
    person = make_person()
    for _ in range(3):
        assert auth.login(person.uid, "wrong-password").status_code == 401
    assert failure_count(slapd, person.dn) == 3
    # Even the right password is not tried: the directory never sees the attempt.
    limited = auth.login(person.uid, person.password)
    assert limited.status_code == 429
    assert "Zbyt wiele nieudanych prób" in limited.get_data(as_text=True)
    auth.login(person.uid, "wrong-again")
    assert failure_count(slapd, person.dn) == 3


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_LOGIN_ADDRESS": "2 per 15 minutes"}])
def test_failed_login_limit_per_client_address(make_person, config_overrides, auth):
    first, second = make_person(), make_person()
    auth.login(first.uid, "wrong-password")
    auth.login(second.uid, "wrong-password")
    assert auth.login(first.uid, first.password).status_code == 429


def test_login_renews_the_session(client, make_person, auth, csrf_token):
    person = make_person()
    before = csrf_token(client.get("/login"))
    auth.login(person.uid, person.password)
    after = csrf_token(client.get("/password"))
    assert before != after


def test_session_cookie_flags(make_person, auth):
    person = make_person()
    response = auth.login(person.uid, person.password)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie  # PUBLIC_URL is https


def test_login_page_never_redirects_off_site(client, make_person, submit):
    person = make_person()
    response = submit(client, "/login?next=//evil.example/x", {"identifier": person.uid, "password": person.password})
    assert response.headers["Location"] == "/password"


# -- expired passwords: the must-change path


def test_expired_password_without_grace_reaches_only_the_change_form(
    client, slapd, make_person, auth, change, can_bind, audit
):
    policy = slapd.add_policy("app-expired-nograce", pwdMaxAge=60, pwdGraceAuthNLimit=0)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    response = auth.login(person.uid, person.password)
    assert response.headers["Location"] == "/password"
    assert client.get("/recovery").headers["Location"] == "/password"
    assert "Twoje hasło wygasło" in client.get("/password").get_data(as_text=True)
    done = change(person.password, NEW)
    assert done.headers["Location"] == "/password/changed"
    assert can_bind(person.dn, NEW)
    assert client.get("/recovery").status_code == 200  # no longer confined
    [event] = [e for e in audit("password_changed") if e["outcome"] == "ok"]
    assert event["expired_password"] is True


def test_expired_password_with_grace_logins_is_changed_by_the_person(
    client, slapd, make_person, auth, change, can_bind, audit
):
    policy = slapd.add_policy("app-expired-grace", pwdMaxAge=60, pwdGraceAuthNLimit=3)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    auth.login(person.uid, person.password)
    assert "Pozwoli zalogować się jeszcze 2 razy" in client.get("/password").get_data(as_text=True)
    assert change(person.password, NEW).headers["Location"] == "/password/changed"
    assert can_bind(person.dn, NEW)
    [event] = [e for e in audit("password_changed") if e["outcome"] == "ok"]
    assert event["expired_password"] is False


def test_a_password_set_by_an_administrator_must_be_changed_at_login(
    client, slapd, make_person, auth, change, can_bind
):
    policy = slapd.add_policy("app-must-change", pwdMustChange="TRUE")
    person = make_person()
    slapd.set_policy(person.dn, policy)
    slapd.modify(f"dn: {person.dn}\nchangetype: modify\nreplace: pwdReset\npwdReset: TRUE\n", relax=True)
    assert auth.login(person.uid, person.password).headers["Location"] == "/password"
    page = client.get("/password").get_data(as_text=True)
    assert "zostało ustawione przez pomoc IT lub administratora" in page
    assert "wygasło" not in page and "logowania awaryjne: 0" not in page
    assert client.get("/recovery").headers["Location"] == "/password"  # confined to the change form
    assert change(person.password, NEW).headers["Location"] == "/password/changed"
    assert can_bind(person.dn, NEW)
    assert client.get("/recovery").status_code == 200


def test_wrong_password_on_an_expired_account_is_still_wrong(slapd, make_person, auth):
    policy = slapd.add_policy("app-expired-wrong", pwdMaxAge=60, pwdGraceAuthNLimit=0)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    assert auth.login(person.uid, "wrong-password").status_code == 401


def test_password_expiring_soon_is_announced_after_login(client, slapd, make_person, auth):
    policy = slapd.add_policy("app-expiring", pwdMaxAge=10 * 86400, pwdExpireWarning=5 * 86400)
    person = make_person()
    nine_days_ago = (datetime.now(UTC) - timedelta(days=9)).strftime("%Y%m%d%H%M%SZ")
    slapd.expire_password(person.dn, policy, changed=nine_days_ago)
    auth.login(person.uid, person.password)
    assert "Twoje hasło wygaśnie za 1 dzień." in client.get("/password").get_data(as_text=True)


# -- changing the password


def test_change_lets_the_person_bind_with_the_new_password_only(client, make_person, auth, change, can_bind):
    person = make_person()
    auth.login(person.uid, person.password)
    response = change(person.password, NEW)
    assert response.status_code == 303
    page = client.get("/password/changed").get_data(as_text=True)
    assert "Poczta i logowanie jednokrotne (SSO) przyjmują już nowe hasło" in page
    assert can_bind(person.dn, NEW)
    assert not can_bind(person.dn, person.password)
    assert client.get("/password").status_code == 200  # the session continues


def test_notification_mail_arrives_after_a_change(smtp, make_person, auth, change):
    person = make_person()
    auth.login(person.uid, person.password)
    change(person.password, NEW)
    [notice] = smtp.wait_for(1)
    assert set(notice["X-Envelope-To"].split(", ")) == set(person.mail + person.recovery)
    assert person.uid in smtp.text(notice) and NEW not in smtp.text(notice)


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
def test_each_refusal_has_its_own_message_and_changes_nothing(make_person, case, expected, auth, change, can_bind):
    person = make_person()
    auth.login(person.uid, person.password)
    current = person.password
    if case == "history":
        change(current, NEW)
        current = NEW
        response = change(current, person.password)
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
            "not-the-password" if case == "wrong_current" else current,
            new,
            confirm=NEW + "x" if case == "mismatch" else None,
        )
    assert response.status_code == 400
    assert expected in response.get_data(as_text=True)
    assert can_bind(person.dn, current)


def test_change_too_recent_is_refused_with_its_message(slapd, make_person, auth, change, can_bind):
    policy = slapd.add_policy("app-min-age", pwdMinAge=3600, pwdInHistory=5)
    person = make_person()
    slapd.set_policy(person.dn, policy)
    auth.login(person.uid, person.password)
    change(person.password, NEW)
    response = change(NEW, "Inne-haslo-z-nad-morza-77")
    assert "Hasło zostało zmienione zbyt niedawno" in response.get_data(as_text=True)
    assert can_bind(person.dn, NEW)


def test_change_form_fields_are_in_order(client, make_person, auth):
    person = make_person()
    auth.login(person.uid, person.password)
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


def test_session_ends_at_logout(client, make_person, auth):
    person = make_person()
    auth.login(person.uid, person.password)
    response = auth.logout()
    assert response.status_code == 303
    assert client.get("/password").status_code == 302


def test_logout_needs_post_and_csrf(client, make_person, auth):
    person = make_person()
    auth.login(person.uid, person.password)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/password").status_code == 200


# -- recovery addresses


@pytest.mark.parametrize("config_overrides", [{"RECOVERY_FORBIDDEN_DOMAINS": ["uni.example"]}])
def test_confirmed_recovery_address_is_stored_only_after_the_link(
    client, app, smtp, make_person, config_overrides, auth, submit, recovery_addresses, add_recovery
):
    person = make_person()
    auth.login(person.uid, person.password)
    response = add_recovery(client, person, "nowy.prywatny@mail.example")
    assert response.status_code == 303
    [message] = smtp.wait_for(1, to="nowy.prywatny@mail.example")
    assert recovery_addresses(person.uid) == person.recovery  # not yet
    stranger = app.test_client()  # opened on a phone, not logged in
    opened = stranger.get(smtp.link_path(message))
    assert opened.headers["Location"] == "/recovery/confirm"
    assert "nowy.prywatny@mail.example" in stranger.get("/recovery/confirm").get_data(as_text=True)
    assert recovery_addresses(person.uid) == person.recovery  # GET changes nothing
    confirmed = submit(stranger, "/recovery/confirm", {})
    assert "Adres awaryjny zapisany" in confirmed.get_data(as_text=True)
    assert set(recovery_addresses(person.uid)) == {*person.recovery, "nowy.prywatny@mail.example"}
    [notice] = smtp.wait_for(1, to=person.recovery[0])
    assert "zostały zmienione" in smtp.text(notice)


def test_unconfirmed_recovery_address_is_not_stored(
    client, smtp, make_person, auth, submit, recovery_addresses, add_recovery
):
    person = make_person()
    auth.login(person.uid, person.password)
    add_recovery(client, person, "nigdy.potwierdzony@mail.example")
    smtp.wait_for(1)
    assert recovery_addresses(person.uid) == person.recovery


def test_replacing_the_recovery_address(client, smtp, make_person, auth, submit, recovery_addresses, add_recovery):
    person = make_person()
    auth.login(person.uid, person.password)
    add_recovery(client, person, "zastepczy@mail.example", replace="y")
    link_path = smtp.link_path(smtp.wait_for(1, to="zastepczy@mail.example")[0])
    client.get(link_path)
    submit(client, "/recovery/confirm", {})
    assert recovery_addresses(person.uid) == ("zastepczy@mail.example",)
    # The same link cannot be used again: the addresses changed.
    client.get(link_path)
    assert client.get("/recovery/confirm").status_code == 400


@pytest.mark.parametrize("config_overrides", [{"RECOVERY_FORBIDDEN_DOMAINS": ["uni.example"]}])
@pytest.mark.parametrize("address", ["ktos@uni.example", "ktos@student.uni.example", "KTOS@UNI.EXAMPLE"])
def test_address_in_the_organisations_domain_is_refused(
    client, smtp, make_person, config_overrides, address, app, auth, submit, add_recovery
):
    person = make_person()
    auth.login(person.uid, person.password)
    response = add_recovery(client, person, address)
    assert response.status_code == 400
    assert "Użyj prywatnego adresu spoza uczelni" in response.get_data(as_text=True)
    assert smtp.delivered(app) == []


@pytest.mark.parametrize("address", ["ktos.inny@uni.example", "ktos@poczta.uni.example", "ktos@STUDENT.uni.example"])
def test_address_in_the_accounts_own_domains_is_refused_by_default(
    client, app, smtp, make_person, address, auth, add_recovery
):
    person = make_person(mail=("ewa.wlasna@uni.example", "ewa.wlasna@student.uni.example"))
    auth.login(person.uid, person.password)
    response = add_recovery(client, person, address)
    assert response.status_code == 400
    assert "Użyj prywatnego adresu spoza uczelni" in response.get_data(as_text=True)
    assert smtp.delivered(app) == []


def test_own_university_address_is_refused_as_recovery(client, smtp, make_person, auth, add_recovery):
    person = make_person()
    auth.login(person.uid, person.password)
    assert add_recovery(client, person, person.mail[1]).status_code == 400


@pytest.mark.parametrize("address", ["not-an-address", "a@b", "x" * 300 + "@mail.example", "a b@mail.example"])
def test_malformed_recovery_address_is_refused(client, make_person, address, auth, submit, add_recovery):
    person = make_person()
    auth.login(person.uid, person.password)
    assert add_recovery(client, person, address).status_code == 400


def test_recovery_page_masks_the_addresses(client, make_person, auth):
    person = make_person()
    auth.login(person.uid, person.password)
    page = client.get("/recovery").get_data(as_text=True)
    assert person.recovery[0] not in page
    assert "***@private.example" in page


def test_removing_the_last_recovery_address_asks_first(
    client, smtp, make_person, auth, submit, recovery_addresses, remove_recovery, app
):
    person = make_person()
    auth.login(person.uid, person.password)
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
    assert recovery_addresses(person.uid) == ()
    [notice] = smtp.wait_for(1, to=person.recovery[0])
    assert "nie będzie już otrzymywać" in smtp.text(notice)


@pytest.mark.parametrize("action", ["add", "replace", "remove"])
@pytest.mark.parametrize("password", ["not-the-password", ""])
def test_changing_the_recovery_address_needs_the_current_password(
    client, app, smtp, make_person, action, password, auth, add_recovery, remove_recovery
):
    person = make_person()
    auth.login(person.uid, person.password)
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
    assert smtp.delivered(app) == []
    with app.app_context():
        assert app.extensions["pwdrst.directory"].get_account(person.uid).recovery_addresses == person.recovery


@pytest.mark.parametrize("config_overrides", [{"RATELIMIT_LOGIN_ACCOUNT": "3 per 15 minutes"}])
def test_wrong_password_for_the_recovery_address_counts_as_a_failed_login(
    client, app, slapd, smtp, make_person, caplog, config_overrides, auth, add_recovery, audit
):
    person = make_person()
    auth.login(person.uid, person.password)
    for _ in range(3):
        assert add_recovery(client, person, "inny@mail.example", password="not-the-password").status_code == 400
    assert failure_count(slapd, person.dn) == 3  # the directory's own policy counted each bind
    # The budget is the login's: even the right password is not tried now, here or at the login.
    assert add_recovery(client, person, "inny@mail.example").status_code == 429
    assert auth.on(app.test_client()).login(person.uid, person.password).status_code == 429
    assert smtp.delivered(app) == []
    outcomes = [e["outcome"] for e in audit("reauthentication")]
    assert outcomes == ["failed"] * 3 + ["limited"]
    assert person.password not in caplog.text


def test_reset_link_dies_when_the_recovery_address_is_replaced(
    client, app, smtp, make_person, auth, add_recovery, submit, reset_flow
):
    person = make_person()
    reset_link = reset_flow.link(person.uid, client=app.test_client())
    auth.login(person.uid, person.password)
    assert add_recovery(client, person, "nowy.jedyny@mail.example", replace="y").status_code == 303
    client.get(smtp.link_path(smtp.wait_for(1, to="nowy.jedyny@mail.example")[0]))
    assert "Adres awaryjny zapisany" in submit(client, "/recovery/confirm", {}).get_data(as_text=True)
    refused = reset_flow.open(reset_link, app.test_client())
    assert refused.status_code == 410


@pytest.mark.parametrize("index", ["5", "-1", "abc", ""])
def test_removing_a_nonexistent_recovery_address_is_a_400(client, make_person, index, auth, submit):
    person = make_person()
    auth.login(person.uid, person.password)
    assert submit(client, "/recovery/remove", {"index": index}, form_url="/recovery").status_code == 400


def test_recovery_confirmation_token_forged_or_missing(client):
    assert client.get("/recovery/confirm").status_code == 400
    client.get("/recovery/forged.token.value")
    assert client.get("/recovery/confirm").status_code == 400


def test_audit_of_login_and_change(make_person, caplog, auth, change, audit):
    person = make_person()
    auth.login(person.uid, "wrong-password")
    auth.login(person.uid, person.password)
    change(person.password, "short")
    change(person.password, NEW)
    logins = audit("login")
    assert [(e["outcome"], e.get("reason")) for e in logins] == [("failed", "invalid_credentials"), ("ok", None)]
    changes = audit("password_changed")
    assert [(e["outcome"], e.get("reason")) for e in changes] == [("refused", "policy"), ("ok", None)]
    assert person.password not in caplog.text and NEW not in caplog.text


# -- the look of refusals (issue 15): one error summary at the top, each error above its field


def test_refused_login_is_an_error_summary_first_in_the_page(client, make_person, auth):
    person = make_person()
    page = auth.login(person.uid, "wrong-password").get_data(as_text=True)
    main = page[page.index('<main id="main"') :]
    assert main.index('class="error-summary" role="alert" tabindex="-1"') < main.index("<h1>")
    assert '<a href="#password">Niepoprawne dane logowania</a>' in main
    assert "autofocus" not in page


def test_refused_change_links_each_problem_to_its_field_and_shows_it_above_the_input(client, make_person, auth, change):
    person = make_person()
    auth.login(person.uid, person.password)
    page = change("", "krótkie", "inne").get_data(as_text=True)
    for field in ("current_password", "new_password", "confirm"):
        assert f'<li><a href="#{field}">' in page
        assert page.index(f'id="{field}-errors"') < page.index(f'id="{field}"')
        assert f'aria-describedby="{field}-errors"' in page or f'{field}-errors"' in page
    assert page.count('class="field field-error"') == 3
    assert 'data-show="current_password"' in page  # the toggle on the current password too


def test_logged_in_home_page_offers_the_change_not_a_login(client, make_person, auth):
    person = make_person()
    auth.login(person.uid, person.password)
    page = client.get("/").get_data(as_text=True)
    assert 'href="/login"' not in page
    assert 'class="button" href="/password"' in page


def test_expired_password_page_warns_once(client, slapd, make_person, auth):
    policy = slapd.add_policy("app-expired-once", pwdMaxAge=60, pwdGraceAuthNLimit=0)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    auth.login(person.uid, person.password)
    page = client.get("/password").get_data(as_text=True)
    assert page.count('class="notice') == 1
    assert "Twoje hasło wygasło" in page
