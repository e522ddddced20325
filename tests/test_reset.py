"""Forgot password, end to end against the real slapd and SMTP server."""

import re
import threading

import ldap3
import pytest
from itsdangerous.timed import TimestampSigner

from pwdrst.links import make_token


@pytest.fixture
def clock(monkeypatch):
    """Return clock(seconds): sign links that many seconds in the past (0: the real time again)."""
    real = TimestampSigner.get_timestamp

    def shift(seconds: int) -> None:
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: real(self) - seconds)

    return shift


# -- the whole flow


def test_alias_request_mails_the_recovery_address_and_the_link_resets(
    client, smtp, reset_flow, can_bind, make_person, new_password
):
    person = make_person()
    response = reset_flow.request(person.mail[2].upper())  # any alias, any case
    assert response.status_code == 303
    [message] = smtp.wait_for(1)
    assert message["X-Envelope-To"] == person.recovery[0]
    assert person.uid in smtp.text(message) and person.display_name in smtp.text(message)
    link = smtp.link(message)
    assert link.startswith("https://pwdrst.uni.example/pwdrst/reset/")
    assert len(link) < 120
    done = reset_flow.set_password(link)
    assert done.status_code == 303 and done.headers["Location"] == "/reset/done"
    page = client.get("/reset/done").get_data(as_text=True)
    assert "Możesz już logować się nowym hasłem do poczty" in page
    assert can_bind(person.dn, new_password)
    assert not can_bind(person.dn, person.password)


def test_reset_mail_has_text_and_html_in_the_request_language(smtp, reset_flow, make_person):
    person = make_person()
    reset_flow.request(person.uid, headers={"Accept-Language": "en"})
    [message] = smtp.wait_for(1)
    assert message["Subject"].startswith("Set a new password")
    assert smtp.link(message) in smtp.html(message)
    assert "If this wasn't you, ignore this mail" in smtp.text(message)


def test_notification_reaches_every_address(smtp, reset_flow, make_person, new_password):
    person = make_person()
    link = reset_flow.link(person.uid)
    smtp.clear()
    reset_flow.set_password(link)
    [notice] = smtp.wait_for(1)
    assert set(notice["X-Envelope-To"].split(", ")) == set(person.mail + person.recovery)
    assert "Jeśli to nie Ty" in smtp.text(notice)
    assert new_password not in smtp.text(notice)


def test_opening_a_link_moves_the_token_out_of_the_address(client, reset_flow, make_person):
    person = make_person()
    opened = reset_flow.open(reset_flow.link(person.uid))
    assert opened.status_code == 303
    assert opened.headers["Location"] == "/reset/new"
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    page = client.get("/reset/new")
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert person.display_name in page.get_data(as_text=True)
    assert "Jak wybrać nowe hasło" in page.get_data(as_text=True)


def test_opening_a_link_does_not_use_it_up(reset_flow, make_person):
    person = make_person()
    link = reset_flow.link(person.uid)
    for _ in range(3):  # a mail scanner following the link, then the person
        assert reset_flow.open(link).status_code == 303
    assert reset_flow.set_password(link).status_code == 303


def test_a_refused_password_leaves_the_link_usable(client, submit, reset_flow, can_bind, make_person, new_password):
    person = make_person()
    link = reset_flow.link(person.uid)
    weak = reset_flow.set_password(link, password="krotkie")
    assert weak.status_code == 400
    assert "Użyj co najmniej 15 znaków" in weak.get_data(as_text=True)
    mismatch = submit(client, "/reset/new", {"new_password": new_password, "confirm": new_password + "x"})
    assert "Wpisane hasła nie są takie same." in mismatch.get_data(as_text=True)
    assert can_bind(person.dn, person.password)
    assert reset_flow.set_password(link).status_code == 303
    assert can_bind(person.dn, new_password)


@pytest.mark.parametrize("length", [129, 100_000])
def test_an_over_long_password_is_refused_by_length(reset_flow, can_bind, make_person, length):
    person = make_person()
    refused = reset_flow.set_password(reset_flow.link(person.uid), password="x" * length)
    assert refused.status_code == 400
    assert f"Użyj najwyżej 128 znaków (to hasło ma ich {length})." in refused.get_data(as_text=True)
    assert can_bind(person.dn, person.password)


def test_the_directory_refusal_is_shown_and_the_link_stays_usable(reset_flow, make_person):
    person = make_person()
    # The person's current password passes our policy but is in the directory's history.
    link = reset_flow.link(person.uid)
    refused = reset_flow.set_password(link, password=person.password)
    assert refused.status_code == 400
    assert "To hasło było już używane" in refused.get_data(as_text=True)
    assert reset_flow.set_password(link).status_code == 303


# -- single use and death at the password change


def test_the_same_link_is_refused_a_second_time(reset_flow, make_person):
    person = make_person()
    link = reset_flow.link(person.uid)
    assert reset_flow.set_password(link).status_code == 303
    again = reset_flow.open(link)
    assert again.status_code == 410
    assert "Link został już użyty" in again.get_data(as_text=True)
    assert 'href="/reset"' in again.get_data(as_text=True)


def test_an_earlier_link_dies_when_a_later_one_is_used(reset_flow, make_person, clock):
    person = make_person()
    clock(600)
    first = reset_flow.link(person.uid)
    clock(0)
    second = reset_flow.link(person.uid)
    assert first != second
    assert reset_flow.set_password(second).status_code == 303
    assert reset_flow.open(first).status_code == 410


def test_a_link_dies_when_the_password_changes_by_other_means(slapd, reset_flow, make_person):
    person = make_person()
    link = reset_flow.link(person.uid)
    conn = ldap3.Connection(ldap3.Server(slapd.url, get_info=ldap3.NONE), person.dn, person.password.encode())
    conn.bind()
    conn.extend.standard.modify_password(None, person.password.encode(), b"Changed-elsewhere-12345")
    conn.unbind()
    assert reset_flow.open(link).status_code == 410


def test_a_link_dies_even_when_held_in_the_session(app, client, csrf_token, reset_flow, make_person, can_bind):
    person = make_person()
    reset_flow.open(reset_flow.link(person.uid))
    token = csrf_token(client.get("/reset/new"))
    with app.app_context():
        directory = app.extensions["pwdrst.directory"]
        directory.reset_password(directory.find_account(person.uid), "Changed-by-someone-else-1")
    # The form comes from the session without asking the directory; the submit reads it again.
    password = "Zielony-parasol-nad-Wisłą-7"
    page = client.post("/reset/new", data={"csrf_token": token, "new_password": password, "confirm": password})
    assert page.status_code == 410
    assert can_bind(person.dn, "Changed-by-someone-else-1") and not can_bind(person.dn, password)


def test_a_link_use_searches_the_directory_at_opening_and_at_the_submit_only(
    client, csrf_token, reset_flow, make_person, can_bind, searches
):
    person = make_person()
    link = reset_flow.link(person.uid)
    searches.clear()
    assert reset_flow.open(link).status_code == 303
    assert len(searches) == 1
    token = csrf_token(client.get("/reset/new"))
    assert len(searches) == 1  # the form: none
    client.post("/api/strength", json={"password": "Zielony-parasol"}, headers={"X-CSRFToken": token})
    assert len(searches) == 1  # the meter: none
    password = "Zielony-parasol-nad-Wisłą-7"
    response = client.post("/reset/new", data={"csrf_token": token, "new_password": password, "confirm": password})
    assert response.status_code == 303
    # The submit writes asserting the entry's revision as it was at the opening: no search.
    assert len(searches) == 1
    assert can_bind(person.dn, password)


def test_a_link_still_works_when_the_entry_moved_since_it_was_opened(
    client, csrf_token, reset_flow, make_person, can_bind, searches
):
    person = make_person()
    link = reset_flow.link(person.uid)
    assert reset_flow.open(link).status_code == 303
    token = csrf_token(client.get("/reset/new"))
    assert not can_bind(person.dn, "a-wrong-password")  # a failed login: pwdFailureTime moves the entry
    searches.clear()
    password = "Zielony-parasol-nad-Wisłą-7"
    response = client.post("/reset/new", data={"csrf_token": token, "new_password": password, "confirm": password})
    assert response.status_code == 303
    assert len(searches) == 1  # the revision's assertion failed; the stored password was read and asserted
    assert can_bind(person.dn, password)


def test_the_session_keeps_no_password_values_of_the_account(app, client, reset_flow, make_person):
    person = make_person()
    reset_flow.open(reset_flow.link(person.uid))
    with client.session_transaction() as session:
        kept = dict(session["reset_account"])
    assert "password_state" not in kept and kept["login"] == person.uid
    assert "{SSHA}" not in repr(kept) and person.password not in repr(kept)


# -- expired, tampered, truncated, foreign links


def test_an_expired_link_is_refused(reset_flow, make_person, clock):
    person = make_person()
    clock(3601)
    link = reset_flow.link(person.uid)
    clock(0)
    refused = reset_flow.open(link)
    assert refused.status_code == 410
    assert "Link wygasł" in refused.get_data(as_text=True)


def test_a_link_one_hour_old_less_a_minute_still_works(reset_flow, make_person, clock):
    person = make_person()
    clock(3540)
    link = reset_flow.link(person.uid)
    clock(0)
    assert reset_flow.set_password(link).status_code == 303


def tamper(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(tamper, id="one-character-changed"),
        pytest.param(lambda t: t[: len(t) - 5], id="truncated"),
        pytest.param(lambda t: t.split(".")[0], id="payload-only"),
        pytest.param(lambda t: "not-a-token-at-all", id="malformed"),
        pytest.param(lambda t: "%FF%FE" + t, id="broken-utf8"),
        pytest.param(lambda t: "A" * 2000, id="over-long"),
    ],
)
def test_a_spoiled_link_is_refused_as_invalid(client, smtp, reset_flow, make_person, spoil):
    person = make_person()
    reset_flow.request(person.uid)
    token = smtp.link_path(smtp.wait_for(1)[0]).removeprefix("/reset/")
    refused = client.get("/reset/" + spoil(token))
    assert refused.status_code in (400, 404)
    if refused.status_code == 400:
        assert "Link jest nieprawidłowy" in refused.get_data(as_text=True)


def test_a_link_signed_with_another_key_is_refused(client, make_app, make_person):
    person = make_person()
    other = make_app(SECRET_KEY="another-secret-key-0123456789abcdef0123")
    with other.app_context():
        account = other.extensions["pwdrst.directory"].find_account(person.uid)
        token = make_token("reset", account.login, account.fingerprint)
    assert client.get("/reset/" + token).status_code == 400


def test_a_link_signed_with_a_fallback_key_still_works(make_app, reset_flow, make_person):
    person = make_person()
    old = make_app()
    with old.app_context():
        account = old.extensions["pwdrst.directory"].find_account(person.uid)
        token = make_token("reset", account.login, account.fingerprint)
    rotated = make_app(
        SECRET_KEY="the-new-secret-key-0123456789abcdef01234", SECRET_KEY_FALLBACKS=[old.config["SECRET_KEY"]]
    )
    link = rotated.config["PUBLIC_URL"] + "/reset/" + token
    assert reset_flow.set_password(link, client=rotated.test_client()).status_code == 303


def test_a_recovery_confirmation_token_is_no_reset_link(app, client, make_person):
    person = make_person()
    with app.app_context():
        account = app.extensions["pwdrst.directory"].find_account(person.uid)
        token = make_token("recovery", account.login, account.fingerprint, extra="x@private.example")
    assert client.get("/reset/" + token).status_code == 400


def test_the_new_password_page_without_a_link_says_what_to_do(client):
    page = client.get("/reset/new")
    assert page.status_code == 400
    assert "Otwórz ponownie link z wiadomości" in page.get_data(as_text=True)


# -- no enumeration


def test_every_case_answers_exactly_like_a_real_account(app, client, smtp, reset_flow, make_person, comparable):
    real = make_person()
    no_recovery = make_person(recovery=False)
    answers = []
    for identifier in (real.uid, "nobody-here@uni.example", no_recovery.uid, "t.lewandowski@uni.example"):
        posted = reset_flow.request(identifier)
        answers.append((comparable(posted), comparable(client.get(posted.headers["Location"]))))
    assert all(answer == answers[0] for answer in answers)
    page = answers[0][1][2]
    assert "adres awaryjny zarejestrowany dla tego konta" in page
    assert "pomoc@uni.example" in page
    assert [m["X-Envelope-To"] for m in smtp.delivered(app)] == [real.recovery[0]]  # only the real account


def test_reset_request_for_real_and_unknown_accounts_is_indistinguishable(client, reset_flow, make_person, comparable):
    person = make_person()
    real = reset_flow.request(person.uid)
    unknown = reset_flow.request("nobody-here-at-all")
    assert comparable(real) == comparable(unknown)
    assert comparable(client.get(real.headers["Location"])) == comparable(client.get(unknown.headers["Location"]))
    assert set(real.headers.keys()) == set(unknown.headers.keys())


def test_the_fourth_request_in_an_hour_sends_nothing_and_looks_the_same(app, smtp, reset_flow, make_person, audit):
    person = make_person()
    answers = []
    for _ in range(4):
        posted = reset_flow.request(person.uid)
        answers.append((posted.status_code, posted.headers["Location"]))
    assert len(set(answers)) == 1
    assert len(smtp.delivered(app)) == 3
    outcomes = [e["outcome"] for e in audit("reset_requested")]
    assert outcomes == ["sent", "sent", "sent", "limited"]


def test_audit_records_each_outcome_without_secrets(reset_flow, make_person, audit, caplog, new_password):
    person = make_person()
    no_recovery = make_person(recovery=False)
    link = reset_flow.link(person.uid)
    for identifier in ("nobody@uni.example", no_recovery.uid, "t.lewandowski@uni.example"):
        reset_flow.request(identifier)
    reset_flow.set_password(link)
    outcomes = [e["outcome"] for e in audit("reset_requested")]
    assert outcomes == ["sent", "unknown", "no_recovery_address", "ambiguous"]
    [reset] = audit("password_reset")
    assert reset["account"] == person.uid and reset["outcome"] == "ok" and reset["request_id"]
    token = link.rsplit("/", 1)[1]
    everything = caplog.text
    assert token not in everything and new_password not in everything and person.password not in everything


# -- outages and hostile requests


def test_request_page_answers_while_smtp_is_down_and_mail_arrives_later(
    app, smtp, reset_flow, make_person, caplog, wait_until
):
    person = make_person()
    smtp.stop()
    response = reset_flow.request(person.uid)
    assert response.status_code == 303
    assert app.extensions["pwdrst.mail"].pending() == 1  # the answer came before the mail went
    wait_until(lambda: "failed (attempt 1" in caplog.text, "no delivery attempt failed while SMTP was down")
    smtp.start()
    [message] = smtp.wait_for(1, timeout=15)
    assert message["X-Envelope-To"] == person.recovery[0]


def test_a_forged_host_header_is_refused(app, client, smtp, make_person):
    person = make_person()
    response = client.post("/reset", data={"identifier": person.uid}, headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert smtp.delivered(app) == []


def test_a_forged_forwarded_host_does_not_change_the_link(smtp, reset_flow, make_person):
    person = make_person()
    link = reset_flow.link(person.uid, headers={"X-Forwarded-Host": "evil.example"})
    assert link.startswith("https://pwdrst.uni.example/pwdrst/reset/")
    assert "evil" not in smtp.text(smtp.messages[0])


def test_directory_outage_is_a_503_page(pure_app, submit):
    response = submit(pure_app.test_client(), "/reset", {"identifier": "jkowalski"})
    assert response.status_code == 503
    assert "Katalog kont nie odpowiada" in response.get_data(as_text=True)


def test_a_post_without_csrf_changes_nothing(app, client, smtp, make_person):
    person = make_person()
    response = client.post("/reset", data={"identifier": person.uid})
    assert response.status_code == 400
    assert smtp.delivered(app) == []


@pytest.mark.parametrize("identifier", ["", " ", "x" * 300])
def test_bad_identifiers_get_a_400_form(reset_flow, identifier):
    response = reset_flow.request(identifier)
    assert response.status_code == 400


def test_locked_account_is_unlocked_by_a_reset(reset_flow, can_bind, make_person, audit, new_password):
    person = make_person()
    for _ in range(6):
        can_bind(person.dn, "wrong-password")
    assert reset_flow.set_password(reset_flow.link(person.uid)).status_code == 303
    assert can_bind(person.dn, new_password)
    [reset] = audit("password_reset")
    assert reset["unlocked"] is True


@pytest.mark.parametrize("config_overrides", [{"RESET_UNLOCKS_ACCOUNT": False}])
def test_locked_account_stays_locked_when_configured(reset_flow, can_bind, make_person, config_overrides):
    person = make_person()
    for _ in range(6):
        can_bind(person.dn, "wrong-password")
    refused = reset_flow.set_password(reset_flow.link(person.uid))
    assert refused.status_code == 400
    assert "Konto jest zablokowane" in refused.get_data(as_text=True)


def test_csrf_token_is_on_the_request_page(client, csrf_token):
    assert csrf_token(client.get("/reset"))


def test_a_link_used_twice_at_the_same_moment_writes_once(
    app, reset_flow, csrf_token, can_bind, make_person, monkeypatch
):
    """Both submissions pass the link check before either writes; the directory lets one through."""
    person = make_person()
    first, second = app.test_client(), app.test_client()
    link = reset_flow.link(person.uid, client=first)
    tokens = []
    for client in (first, second):
        reset_flow.open(link, client)
        tokens.append(csrf_token(client.get("/reset/new")))
    both_checked = threading.Barrier(2, timeout=10)
    directory = app.extensions["pwdrst.directory"]
    real_reset = directory.reset_password

    def reset_after_both_checked(*args, **kwargs):
        both_checked.wait()  # both requests have verified the link against the same password state
        return real_reset(*args, **kwargs)

    monkeypatch.setattr(directory, "reset_password", reset_after_both_checked)
    answers = {}
    passwords = {first: "Pierwsza-karta-przegladarki-1", second: "Druga-karta-przegladarki-22"}

    def submit_in(client, token):
        form = {"csrf_token": token, "new_password": passwords[client], "confirm": passwords[client]}
        answers[client] = client.post("/reset/new", data=form)

    threads = [threading.Thread(target=submit_in, args=pair) for pair in zip((first, second), tokens, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(a.status_code for a in answers.values())
    assert statuses == [303, 410]
    winner = next(c for c, a in answers.items() if a.status_code == 303)
    assert can_bind(person.dn, passwords[winner])
    assert "Link został już użyty" in next(a for a in answers.values() if a.status_code == 410).get_data(as_text=True)


def test_without_javascript_the_new_password_form_shows_a_server_made_passphrase(client, reset_flow, make_person):
    from pwdrst.passphrase import words

    reset_flow.open(reset_flow.link(make_person().uid))
    page = client.get("/reset/new").get_data(as_text=True)
    shown = re.search(r'data-server-suggestion>Na przykład: <span class="mono">([^<]+)</span>', page).group(1)
    chosen = shown.split("-")
    polish = set(words(client.application.static_folder, "pl"))
    assert len(chosen) == 5 and set(chosen) <= polish
    assert 'data-suggest="new_password"' in page and 'data-words="/static/words/pl.txt"' in page
