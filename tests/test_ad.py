"""LDAP_FLAVOUR=ad against a real Samba AD DC: the six failures of issue 13, each proven fixed."""

import contextlib
import gc
import os
import subprocess
import threading

import ldap3
import pytest

from pwdrst import sandbox
from pwdrst.directory import AccountLocked, InvalidCredentials, PasswordRejected
from pwdrst.messages import refusal
from pwdrst.policy import check_password
from pwdrst.sandbox_samba import SAMBA_TOOL, SERVICE_LOGIN, ldb_search


@pytest.fixture
def ad_app(make_ad_app):
    return make_ad_app()


@pytest.fixture
def ad(ad_app):
    """The directory layer of an app wired to the Samba DC."""
    return ad_app.extensions["pwdrst.directory"]


@pytest.fixture
def ad_client(ad_app):
    return ad_app.test_client()


@pytest.fixture
def reset_flow(ad_client, smtp, submit, new_password):
    """The reset flow of the AD app (the conftest one drives the OpenLDAP app)."""
    from tests.conftest import ResetFlow

    return ResetFlow(ad_client, smtp, submit, new_password)


# -- (a) a person's own change is made as that person


def test_own_changes_in_8_threads_are_each_made_as_their_person(ad, make_ad_person, ad_can_bind, monkeypatch):
    """Each thread's pooled connection is bound as somebody else first; every change still binds as its person."""
    people = [make_ad_person() for _ in range(8)]
    others = [make_ad_person() for _ in range(8)]
    made_as = {}
    real_modify = ldap3.Connection.modify

    def modify(conn, dn, changes, *args, **kwargs):
        if "unicodePwd" in changes:
            # Samba has no "who am I": the rootDSE's tokenGroups are the SIDs of the bound identity.
            conn.search("", "(objectClass=*)", ldap3.BASE, attributes=["tokenGroups"])
            token = set(conn.response[0]["raw_attributes"]["tokenGroups"])
            conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["objectSid"])
            made_as[dn] = conn.response[0]["raw_attributes"]["objectSid"][0] in token
        return real_modify(conn, dn, changes, *args, **kwargs)

    monkeypatch.setattr(ldap3.Connection, "modify", modify)
    start = threading.Barrier(8, timeout=30)
    errors = []

    def change(person, other):
        try:
            ad.authenticate(other.uid, other.password)  # this thread's user connection: bound as other
            start.wait()
            assert (
                ad.change_password(ad.find_account(person.uid), person.password, f"Nowe-{person.uid}-Haslo-1") is False
            )
        except Exception as exc:  # noqa: BLE001 - handed to the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=change, args=pair) for pair in zip(people, others, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for person in people:
        dn = ad.find_account(person.uid).dn
        assert made_as[dn] is True, f"the change of {person.uid} was not made as {person.uid}"
        assert ad_can_bind(person, f"Nowe-{person.uid}-Haslo-1")
        assert not ad_can_bind(person, person.password)


def test_an_expired_password_is_changed_with_the_old_one_as_proof(ad, samba, make_ad_person, ad_can_bind):
    person = make_ad_person()
    samba.expire(person)
    assert ad.change_password(ad.find_account(person.uid), person.password, "Po-wygasnieciu-Nowe-1") is True
    assert ad_can_bind(person, "Po-wygasnieciu-Nowe-1")
    with pytest.raises(InvalidCredentials):
        samba.expire(person)
        ad.change_password(ad.find_account(person.uid), "Zle-stare-haslo-1", "Po-wygasnieciu-Nowe-2")


# -- (b) AD's refusals, each its own reason and sentence


def test_a_wrong_current_password_is_wrong_not_weak(ad, make_ad_person, ad_can_bind):
    person = make_ad_person()
    with pytest.raises(InvalidCredentials):
        ad.change_password(ad.find_account(person.uid), "Nie-to-haslo-123", "Nowe-haslo-Calkiem-9")
    assert ad_can_bind(person, person.password)


def test_a_password_in_history_is_refused_as_such(ad_app, ad, make_ad_person):
    person = make_ad_person()
    account = ad.find_account(person.uid)
    ad.change_password(account, person.password, "Drugie-haslo-Historii-1")
    with pytest.raises(PasswordRejected) as refused:
        ad.change_password(account, "Drugie-haslo-Historii-1", person.password)
    assert refused.value.reason == "in_history"
    with ad_app.test_request_context(headers={"Accept-Language": "en"}):
        assert "last 5 passwords" in refusal(refused.value.reason, refused.value.details)


def test_a_change_too_soon_names_the_domains_minimum_age(ad_app, ad, samba, make_ad_person):
    person = make_ad_person()
    account = ad.find_account(person.uid)
    with samba.password_settings(min_age=86400):
        ad.flavour._rules = None  # the domain's settings are cached for a minute
        with pytest.raises(PasswordRejected) as refused:
            ad.change_password(account, person.password, "Za-wczesnie-Zmienione-1")
    assert refused.value.reason == "too_young"
    with ad_app.test_request_context(headers={"Accept-Language": "en"}):
        assert "1 day" in refusal(refused.value.reason, refused.value.details)
    with ad_app.test_request_context(headers={"Accept-Language": "pl"}):
        assert "1 dzień" in refusal(refused.value.reason, refused.value.details)


@pytest.mark.parametrize(
    ("new", "settings", "reason", "said"),
    [
        ("tylkomalelitery-i-kreski", {}, "complexity", "three of these four kinds"),
        ("Krotkie-Haslo-1", {"min_length": 20}, "too_short", "at least 20 characters"),
    ],
)
def test_the_domains_rules_are_named(ad_app, ad, samba, make_ad_person, new, settings, reason, said):
    person = make_ad_person()
    with samba.password_settings(**settings) if settings else contextlib.nullcontext():
        ad.flavour._rules = None
        with pytest.raises(PasswordRejected) as refused:
            ad.change_password(ad.find_account(person.uid), person.password, new)
    ad.flavour._rules = None
    assert refused.value.reason == reason
    with ad_app.test_request_context(headers={"Accept-Language": "en"}):
        assert said in refusal(refused.value.reason, refused.value.details)


def test_without_the_rule_named_every_rule_of_the_domain_is_said(ad_app):
    details = {"min_length": 8, "complexity": True, "history_length": 5, "min_age": 0}
    with ad_app.test_request_context(headers={"Accept-Language": "en"}):
        sentence = refusal("domain_rules", details)
    assert "at least 8 characters" in sentence and "three of these four kinds" in sentence
    assert "last 5 passwords" in sentence and "only" not in sentence.split("passwords.")[-1]


def test_a_locked_account_cannot_change_and_is_told_so(ad, samba, make_ad_person):
    person = make_ad_person()
    samba.lock(person)
    with pytest.raises(AccountLocked):
        ad.change_password(ad.find_account(person.uid), person.password, "Zablokowane-Konto-1")


def test_the_change_form_shows_ads_history_refusal(ad_client, ad, make_ad_person, submit):
    person = make_ad_person(password="Pierwsze-haslo-W-domenie-1")
    ad.change_password(ad.find_account(person.uid), person.password, "Drugie-haslo-W-domenie-22")
    submit(ad_client, "/login", {"identifier": person.uid, "password": "Drugie-haslo-W-domenie-22"})
    form = {
        "current_password": "Drugie-haslo-W-domenie-22",
        "new_password": person.password,
        "confirm": person.password,
    }
    page = submit(ad_client, "/password", form, headers={"Accept-Language": "pl"})
    assert page.status_code == 400
    assert "5 ostatnich" in page.get_data(as_text=True)


# -- (c) the domain's complexity rule in pwdrst's own policy


def test_the_policy_applies_the_domains_complexity_rule(ad_app):
    with ad_app.test_request_context(headers={"Accept-Language": "en"}):
        assert "complexity" in check_password("wszystkie male litery i spacje tutaj").codes
        assert "complexity" not in check_password("Wszystkie male litery i spacje tutaj").codes


def test_the_meter_and_the_reset_form_refuse_before_ad(ad_client, reset_flow, make_ad_person, ad_can_bind, csrf_token):
    token = csrf_token(ad_client.get("/reset"))
    answer = ad_client.post(
        "/api/strength", json={"password": "wszystkie male litery i spacje tutaj"}, headers={"X-CSRFToken": token}
    )
    assert "complexity" in [p["code"] for p in answer.get_json()["problems"]], answer.get_json()
    person = make_ad_person()
    link = reset_flow.link(person.uid)
    page = reset_flow.set_password(link, "wszystkie male litery i spacje tutaj")
    assert page.status_code == 400
    assert ad_can_bind(person, person.password)


# -- (d) a reset by link unlocks


def test_a_reset_by_link_unlocks(ad, samba, reset_flow, make_ad_person, ad_can_bind, new_password, audit):
    person = make_ad_person()
    samba.lock(person)
    assert ad.find_account(person.uid).locked
    done = reset_flow.set_password(reset_flow.link(person.uid))
    assert done.status_code == 303
    assert ad_can_bind(person, new_password)
    assert not ad.find_account(person.uid).locked
    assert audit("password_reset")[-1]["unlocked"] is True


def test_a_reset_that_may_not_unlock_says_whom_to_ask(ad, samba, reset_flow, make_ad_person, ad_can_bind, new_password):
    person = make_ad_person()
    (sid,) = ldb_search(samba.root, f"(sAMAccountName={SERVICE_LOGIN})", "objectSid")
    # An explicit deny of writing lockoutTime on this one user beats the inherited delegation.
    subprocess.run(
        [SAMBA_TOOL, "dsacl", "set", "-H", os.path.join(samba.root, "private", "sam.ldb")]
        + [f"--objectdn={samba.dn(person)}", f"--sddl=(OD;;WP;28630ebf-41d5-11d1-a9c1-0000f80367c1;;{sid})"]
        + ["-s", os.path.join(samba.root, "etc", "smb.conf")],
        check=True,
        capture_output=True,
    )
    samba.lock(person)
    done = reset_flow.set_password(reset_flow.link(person.uid))
    assert done.status_code == 303
    page = reset_flow.client.get("/reset/done", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "still locked" in page and "Ask the helpdesk" in page
    assert ad.find_account(person.uid).locked


# -- (e) the helpdesk sees AD's states


def test_the_account_state_is_read_from_ads_attributes(ad, samba, make_ad_person):
    locked, expired, must, fine = (make_ad_person() for _ in range(4))
    samba.lock(locked)
    samba.expire(expired)
    samba.must_change(must)
    states = {p.uid: ad.get_account(p.uid) for p in (locked, expired, must, fine)}
    assert states[locked.uid].locked and not states[fine.uid].locked
    assert states[expired.uid].password_expired and not states[must.uid].password_expired
    assert states[must.uid].must_change and not states[expired.uid].must_change
    assert states[fine.uid].password_changed_at is not None
    assert states[must.uid].password_changed_at is None
    assert not any(s.password_expired for s in (states[fine.uid], states[locked.uid]))


def test_the_helpdesk_page_shows_locked_and_must_change(ad_client, samba, make_ad_person, submit):
    staff = sandbox.SAMPLE_PEOPLE[3]  # mzielinska, in the helpdesk group
    person = make_ad_person()
    samba.lock(person)
    samba.must_change(person)
    submit(ad_client, "/login", {"identifier": staff.uid, "password": staff.password})
    page = ad_client.get(f"/helpdesk/account/{person.uid}", headers={"Accept-Language": "en"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<strong>yes</strong>" in html.split("Locked")[1].split("</tr>")[0]
    assert "set by the helpdesk" in html
    assert "disabled in the directory" not in html


def test_the_helpdesk_page_shows_a_disabled_account(ad_client, samba, make_ad_person, submit):
    staff = sandbox.SAMPLE_PEOPLE[3]
    person = make_ad_person()
    samba.modify(f"dn: {samba.dn(person)}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n")
    submit(ad_client, "/login", {"identifier": staff.uid, "password": staff.password})
    html = ad_client.get(f"/helpdesk/account/{person.uid}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "disabled in the directory" in html


# -- (f) a link used twice at the same moment writes once


def test_a_link_used_twice_at_the_same_moment_writes_once_in_ad(
    ad_app, ad, reset_flow, csrf_token, make_ad_person, ad_can_bind, monkeypatch
):
    from pwdrst import changes

    real_claim, real_reset = changes.ratelimit.claim, ad.flavour.reset_password
    writes = []

    def reset(*args, **kwargs):
        writes.append(args[0].login)
        return real_reset(*args, **kwargs)

    monkeypatch.setattr(ad.flavour, "reset_password", reset)
    for round_ in range(4):
        person = make_ad_person()
        first, second = ad_app.test_client(), ad_app.test_client()
        link = reset_flow.link(person.uid, client=first)
        tokens = []
        for client in (first, second):
            reset_flow.open(link, client)
            tokens.append(csrf_token(client.get("/reset/new")))
        both_checked = threading.Barrier(2, timeout=10)

        def claim(*args, barrier=both_checked):
            barrier.wait()  # both requests verified the link against the same password state
            return real_claim(*args)

        monkeypatch.setattr(changes.ratelimit, "claim", claim)
        passwords = {first: f"Pierwsza-Karta-{round_}-1", second: f"Druga-Karta-{round_}-22"}
        answers = {}

        def submit_in(client, token, passwords=passwords, answers=answers):
            form = {"csrf_token": token, "new_password": passwords[client], "confirm": passwords[client]}
            answers[client] = client.post("/reset/new", data=form)

        threads = [threading.Thread(target=submit_in, args=p) for p in zip((first, second), tokens, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(a.status_code for a in answers.values()) == [303, 410]
        assert writes.count(person.uid) == 1
        winner = next(c for c, a in answers.items() if a.status_code == 303)
        assert ad_can_bind(person, passwords[winner])


def test_a_link_refused_by_the_domain_stays_usable(ad, samba, reset_flow, make_ad_person, ad_can_bind, new_password):
    person = make_ad_person()
    link = reset_flow.link(person.uid)
    with samba.password_settings(min_length=40):
        ad.flavour._rules = None
        assert reset_flow.set_password(link).status_code == 400  # claimed, refused, given back
    ad.flavour._rules = None
    assert reset_flow.set_password(link).status_code == 303
    assert ad_can_bind(person, new_password)


# -- (g) a TLS failure names its cause


@pytest.fixture
def check_config(make_ad_app):
    def run(**overrides):
        return make_ad_app(**overrides).test_cli_runner().invoke(args=["check-config"])

    return run


def test_check_config_works_against_samba(check_config):
    result = check_config()
    assert result.exit_code == 0, result.output
    assert "directory: ok" in result.output


def test_an_untrusted_certificate_is_named(check_config, tmp_path, caplog):
    from pwdrst.sandbox_samba import make_certificates

    make_certificates(str(tmp_path))
    result = check_config(LDAP_CA_FILE=str(tmp_path / "ca.pem"))
    assert result.exit_code != 0
    assert "not trusted" in result.output
    assert any("not trusted" in r.getMessage() for r in caplog.records)


# ldap3 checks the name after wrapping the socket and drops the wrapped socket unclosed when it fails.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_certificate_for_another_host_is_named(check_config, caplog):
    # /etc/hosts maps "vm" to 127.0.0.1; the DC's certificate names only 127.0.0.1 and localhost.
    result = check_config(LDAP_URL=["ldaps://vm:636"])
    gc.collect()  # the unclosed socket's warning belongs to this test
    assert result.exit_code != 0
    assert "not valid for this host name" in result.output
    assert any("not valid for this host name" in r.getMessage() for r in caplog.records)


# -- history on reset: Samba ignores the policy-hints control


def test_samba_accepts_a_reused_password_on_reset(ad, make_ad_person, ad_can_bind):
    """The reset sends the policy-hints control (not critical); Samba ignores it, so history is not enforced."""
    person = make_ad_person()
    ad.reset_password(ad.find_account(person.uid), person.password)
    assert ad_can_bind(person, person.password)


def test_an_alias_held_only_in_proxy_addresses_finds_the_account(ad, samba):
    person = sandbox.Person(
        "adalias1",
        "Ola",
        "Aliasowa",
        "Bardzo-dlugie-Haslo-1",
        ("ola.aliasowa@uni.example", "o.a.x@student.uni.example"),
    )
    samba.add_person(person)
    assert ad.find_account("O.A.X@Student.Uni.Example").login == "adalias1"
    assert [a.login for a in ad.search_accounts("o.a.x@stud")[0]] == ["adalias1"]
    assert "o.a.x@student.uni.example" in ad.find_account("adalias1").addresses
    assert ad.find_account("smtp:*") is None and ad.search_accounts("*)(smtp:")[0] == []


def test_expiry_reminders_reach_ad_people_by_the_domains_maximum_age(
    make_ad_app, samba, make_ad_person, smtp, tmp_path
):
    import csv
    import io

    app = make_ad_app(REMINDER_STATE_DIR=str(tmp_path))
    person = make_ad_person()  # pwdLastSet is now
    runner = app.test_cli_runner()

    def outcome(result) -> tuple[str, str]:
        rows = {r["login"]: (r["days_left"], r["outcome"]) for r in csv.DictReader(io.StringIO(result.stdout))}
        return rows[person.uid]

    with samba.password_settings(max_age=5 * 86400):  # so the new password expires in 5 days
        app.extensions["pwdrst.directory"].flavour._rules = None  # the domain's settings are cached for a minute
        first = runner.invoke(args=["notify-expiring", "--days", "7,1"])
        assert first.exit_code == 0, first.output
        assert outcome(first) == ("5", "sent")
        addresses = set(person.mail) | set(person.recovery)
        mails = [m for m in smtp.delivered(app) if set(m["X-Envelope-To"].split(", ")) & addresses]
        assert len(mails) == 1 and f"Hasło do konta {person.uid} wygasa za 5 dni" in smtp.text(mails[0])
        again = runner.invoke(args=["notify-expiring", "--days", "7,1"])
        assert outcome(again) == ("5", "already_sent")
    app.extensions["pwdrst.directory"].flavour._rules = None
    later = runner.invoke(args=["notify-expiring", "--days", "7,1"])  # the sandbox's 365 days again
    assert outcome(later)[1] == "not_due"
