"""Every flow once against each directory: OpenLDAP (slapd) and Active Directory (a Samba AD DC).

The other test files prove each flow in depth against slapd (and tests/test_ad.py what is AD's
own); here one representative test per flow runs over both, through `directory_kind`.
"""

import itertools
from dataclasses import dataclass

import pytest

from pwdrst import sandbox
from pwdrst.sandbox import free_port
from tests.conftest import PUBLIC_URL, ResetFlow

NEW = "Nowe-Haslo-z-lasu-nad-rzeka-44"
_policies = itertools.count(1)


@dataclass
class Kind:
    """One directory with the same verbs for both: an app wired to it, people, and checks from outside."""

    name: str
    app: object
    make_person: object
    can_bind: object
    expire: object
    must_change: object
    dead_url: str

    def account(self, login):
        with self.app.app_context():
            return self.app.extensions["pwdrst.directory"].get_account(login)


@pytest.fixture(params=["openldap", "ad"])
def kind(request, make_app, make_person, can_bind, slapd, smtp):
    """The directory a test runs against, once for each."""
    if request.param == "openldap":
        n = next(_policies)
        expired = slapd.add_policy(f"flows-expired-{n}", pwdMaxAge=60, pwdGraceAuthNLimit=0)
        must = slapd.add_policy(f"flows-must-change-{n}", pwdMustChange="TRUE")

        def must_change(person):
            slapd.set_policy(person.dn, must)
            slapd.modify(f"dn: {person.dn}\nchangetype: modify\nreplace: pwdReset\npwdReset: TRUE\n", relax=True)

        return Kind(
            "openldap",
            make_app(),
            make_person,
            lambda person, password: can_bind(person.dn, password),
            lambda person: slapd.expire_password(person.dn, expired),
            must_change,
            f"ldap://127.0.0.1:{free_port()}",
        )
    samba = request.getfixturevalue("samba")
    make_ad_person = request.getfixturevalue("make_ad_person")
    ad_can_bind = request.getfixturevalue("ad_can_bind")
    return Kind(
        "ad",
        make_app(**samba.app_settings(PUBLIC_URL, smtp.port)),
        lambda **kwargs: make_ad_person(**kwargs),
        ad_can_bind,
        samba.expire,
        samba.must_change,
        f"ldaps://127.0.0.1:{free_port()}",
    )


@pytest.fixture
def client(kind):
    return kind.app.test_client()


@pytest.fixture
def flow(client, smtp, submit, new_password):
    return ResetFlow(client, smtp, submit, new_password)


def login(submit, client, identifier, password):
    return submit(client, "/login", {"identifier": identifier, "password": password})


def change(submit, client, current, new):
    return submit(client, "/password", {"current_password": current, "new_password": new, "confirm": new})


def test_reset_by_link_through_an_alias(kind, flow, new_password):
    person = kind.make_person()
    done = flow.set_password(flow.link(person.mail[1]))
    assert done.headers["Location"] == "/reset/done"
    assert kind.can_bind(person, new_password)
    assert not kind.can_bind(person, person.password)


def test_login_with_the_login_and_an_alias_and_a_wrong_password(kind, client, submit):
    person = kind.make_person()
    assert login(submit, client, person.mail[0], person.password).headers["Location"] == "/password"
    other = kind.app.test_client()
    assert login(submit, other, person.uid, "Nie-to-haslo-123").status_code == 401


def test_change_after_login(kind, client, submit):
    person = kind.make_person()
    login(submit, client, person.uid, person.password)
    assert change(submit, client, person.password, NEW).headers["Location"] == "/password/changed"
    assert kind.can_bind(person, NEW)


def test_expired_password_is_changed_from_the_login(kind, client, submit):
    person = kind.make_person()
    kind.expire(person)
    assert login(submit, client, person.uid, person.password).headers["Location"] == "/password"
    assert "wygasło" in client.get("/password").get_data(as_text=True)
    assert change(submit, client, person.password, NEW).headers["Location"] == "/password/changed"
    assert kind.can_bind(person, NEW)


def test_must_change_password_is_changed_from_the_login(kind, client, submit):
    person = kind.make_person()
    kind.must_change(person)
    assert login(submit, client, person.uid, person.password).headers["Location"] == "/password"
    assert "zostało ustawione przez pomoc IT lub administratora" in client.get("/password").get_data(as_text=True)
    assert change(submit, client, person.password, NEW).headers["Location"] == "/password/changed"
    assert kind.can_bind(person, NEW)


def test_recovery_address_is_stored_after_its_confirmation(kind, client, submit, smtp):
    person = kind.make_person()
    login(submit, client, person.uid, person.password)
    data = {"address": "nowy.prywatny@mail.example", "current_password": person.password}
    assert submit(client, "/recovery", data).status_code == 303
    [message] = smtp.wait_for(1, to="nowy.prywatny@mail.example")
    stranger = kind.app.test_client()
    stranger.get(smtp.link_path(message))
    assert "Adres awaryjny zapisany" in submit(stranger, "/recovery/confirm", {}).get_data(as_text=True)
    assert set(kind.account(person.uid).recovery_addresses) == {*person.recovery, "nowy.prywatny@mail.example"}


def test_helpdesk_search_and_issue(kind, client, submit, smtp, flow, new_password):
    # The sample's helpdesk member (adding members would change the groups other tests check).
    staff = sandbox.SAMPLE_PEOPLE[3]
    person = kind.make_person(given="Zofia", surname="Szukana")
    assert login(submit, client, staff.uid, staff.password).status_code == 303
    found = client.get("/helpdesk/", query_string={"q": person.mail[0][:12]}).get_data(as_text=True)
    assert person.uid in found
    form = {"delivery": "recovery"}
    issued = submit(client, f"/helpdesk/account/{person.uid}/link", form, form_url=f"/helpdesk/account/{person.uid}")
    assert issued.status_code == 303
    _, link = smtp.wait_for_link(person.recovery[0])
    assert flow.set_password(link, client=kind.app.test_client()).headers["Location"] == "/reset/done"
    assert kind.can_bind(person, new_password)


def test_cli_issue_link_and_check_config(kind, flow, new_password):
    person = kind.make_person()
    runner = kind.app.test_cli_runner()
    assert runner.invoke(args=["check-config"]).exit_code == 0
    result = runner.invoke(args=["issue-link", person.uid, "--print", "--max-age", "600"])
    assert result.exit_code == 0, result.output
    assert flow.set_password(result.output.strip()).headers["Location"] == "/reset/done"
    assert kind.can_bind(person, new_password)


def test_a_directory_that_does_not_answer_is_a_503(kind, make_app, submit):
    settings = {"LDAP_URL": [kind.dead_url]}
    if kind.name == "ad":
        settings = {**kind.app.config, **settings}
        settings = {k: v for k, v in settings.items() if k.startswith("LDAP_")}
    app = make_app(**settings)
    form = {"identifier": "ktos", "password": "Jakies-haslo-123"}
    page = submit(app.test_client(), "/login", form, form_url="/login")
    assert page.status_code == 503
