"""Mail and web sign-on take the new password at once: every flow, checked through real IMAP and SSO.

The mailbox is a private Dovecot (`passdb ldap`, `auth_bind = yes`, cache off) and the sign-on an
Apache httpd with mod_authnz_ldap, both binding to the test slapd as the person, as a university's
mail and SSO servers do (pwdrst.sandbox_clients).
"""

import pytest

from pwdrst import sandbox

STAFF = sandbox.SAMPLE_PEOPLE[3]  # mzielinska, helpdesk group
POLISH = "Zażółć\u00a0gęślą jaźń przy młynie 7"


@pytest.fixture
def clients(dovecot, apache_sso):
    """Return accepts(login, password) -> (mailbox, sign-on): whether each takes the password."""

    def accepts(login, password):
        return dovecot.login(login, password), apache_sso.login(login, password)

    return accepts


def test_a_reset_by_link_moves_mail_and_sign_on_to_the_new_password(clients, make_person, reset_flow, new_password):
    person = make_person()
    assert clients(person.uid, person.password) == (True, True)
    assert reset_flow.set_password(reset_flow.link(person.uid)).headers["Location"] == "/reset/done"
    assert clients(person.uid, person.password) == (False, False)
    assert clients(person.uid, new_password) == (True, True)


def test_a_change_after_login_moves_mail_and_sign_on_to_the_new_password(
    clients, make_person, auth, submit, client, new_password
):
    person = make_person()
    assert clients(person.uid, person.password) == (True, True)
    auth.login(person.uid, person.password)
    data = {"current_password": person.password, "new_password": new_password, "confirm": new_password}
    assert submit(client, "/password", data).headers["Location"] == "/password/changed"
    assert clients(person.uid, person.password) == (False, False)
    assert clients(person.uid, new_password) == (True, True)


def test_a_helpdesk_link_moves_mail_and_sign_on_to_the_new_password(
    clients, make_person, app, auth, submit, smtp, reset_flow, new_password
):
    person = make_person()
    staff = app.test_client()
    auth.on(staff).login(STAFF.uid, STAFF.password)
    form = f"/helpdesk/account/{person.uid}"
    submit(staff, f"{form}/link", {"delivery": "recovery"}, form_url=form)
    _, link = smtp.wait_for_link(person.recovery[0])
    assert clients(person.uid, person.password) == (True, True)
    assert reset_flow.set_password(link).headers["Location"] == "/reset/done"
    assert clients(person.uid, person.password) == (False, False)
    assert clients(person.uid, new_password) == (True, True)


def test_a_polish_password_with_a_no_break_space_works_byte_for_byte(clients, make_person, reset_flow):
    person = make_person()
    assert reset_flow.set_password(reset_flow.link(person.uid), POLISH).headers["Location"] == "/reset/done"
    assert clients(person.uid, POLISH) == (True, True)
    assert clients(person.uid, POLISH.replace("\u00a0", " ")) == (False, False)


def test_a_mailbox_lockout_shows_in_the_helpdesk_and_a_reset_by_link_clears_it(
    dovecot, apache_sso, make_person, app, auth, reset_flow, new_password
):
    person = make_person()
    for attempt in range(5):
        assert not dovecot.login(person.uid, f"zle-haslo-{attempt}")
    assert not dovecot.login(person.uid, person.password), "five failures lock the account"
    staff = app.test_client()
    auth.on(staff).login(STAFF.uid, STAFF.password)
    page = staff.get(f"/helpdesk/account/{person.uid}").get_data(as_text=True)
    assert "<strong>tak</strong>" in page.split("Zablokowane")[1][:80]
    assert reset_flow.set_password(reset_flow.link(person.uid)).headers["Location"] == "/reset/done"
    assert dovecot.login(person.uid, new_password)
    assert apache_sso.login(person.uid, new_password)
