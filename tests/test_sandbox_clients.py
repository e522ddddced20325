"""The directory's other clients, Dovecot IMAP and Apache sign-on, against the session's slapd.

These show with real servers what a password change means outside pwdrst: the mailbox and the
single sign-on bind as the person, so the directory's answer is theirs at once, unless a cache
stands in between.
"""

import dataclasses
import os

import ldap3
import pytest

from pwdrst import sandbox
from pwdrst.sandbox_clients import ApacheLdap, Dovecot, _live_members

POLISH_PASSWORD = "Zażółć\u00a0gęślą jaźń-ŁÓDŹ-7"


@pytest.fixture
def dovecot_cached(slapd, start_client):
    """A second Dovecot, with its authentication cache on (as many sites run it)."""
    server = start_client(Dovecot(slapd, auth_cache_size="1M", auth_cache_ttl="1 hour"))
    yield server
    server.close()


def change_password(slapd, person, new_password):
    """Change a person's password in the directory as the person (RFC 3062 Password Modify)."""
    conn = ldap3.Connection(
        ldap3.Server(slapd.url, get_info=ldap3.NONE), person.dn, person.password.encode(), raise_exceptions=True
    )
    try:
        conn.bind()
        conn.extend.standard.modify_password(old_password=person.password.encode(), new_password=new_password.encode())
    finally:
        conn.unbind()
    return dataclasses.replace(person, password=new_password)


def password_state(slapd, dn):
    """Return the password policy's operational attributes of an entry."""
    conn = ldap3.Connection(
        ldap3.Server(slapd.url, get_info=ldap3.NONE), sandbox.ADMIN_DN, sandbox.ADMIN_PASSWORD, auto_bind=True
    )
    try:
        conn.search(
            dn, "(objectClass=*)", ldap3.BASE, attributes=["pwdAccountLockedTime", "pwdFailureTime", "pwdGraceUseTime"]
        )
        return conn.entries[0].entry_attributes_as_dict
    finally:
        conn.unbind()


def test_mailbox_and_sign_on_accept_the_password_and_refuse_a_wrong_one(dovecot, apache_sso, make_person):
    person = make_person()
    assert dovecot.login(person.uid, person.password)
    assert dovecot.login(person.uid, person.password, mechanism="LOGIN")
    assert apache_sso.login(person.uid, person.password)
    assert not dovecot.login(person.uid, person.password + "x")
    assert not dovecot.login(person.uid, person.password + "x", mechanism="LOGIN")
    assert not apache_sso.login(person.uid, person.password + "x")


def test_an_unknown_login_is_refused(dovecot, apache_sso):
    assert not dovecot.login("nobody-here", "Bardzo-dlugie-haslo")
    assert not apache_sso.login("nobody-here", "Bardzo-dlugie-haslo")


def test_a_changed_password_works_at_once_and_the_old_one_is_refused(dovecot, apache_sso, slapd, make_person):
    old = make_person()
    assert dovecot.login(old.uid, old.password) and apache_sso.login(old.uid, old.password)
    new = change_password(slapd, old, "Nowe-haslo-do-poczty-i-sso-1")
    assert dovecot.login(new.uid, new.password)
    assert apache_sso.login(new.uid, new.password)
    assert not dovecot.login(old.uid, old.password)
    assert not apache_sso.login(old.uid, old.password)


def test_a_cached_mailbox_keeps_the_old_password_until_the_cache_is_flushed(dovecot_cached, slapd, make_person):
    old = make_person()
    assert dovecot_cached.login(old.uid, old.password)
    new = change_password(slapd, old, "Nowe-haslo-po-zmianie-w-cache-2")
    assert dovecot_cached.login(old.uid, old.password), "the cache answered for the old password"
    assert dovecot_cached.login(old.uid, old.password)
    dovecot_cached.flush_cache(old.uid)
    assert not dovecot_cached.login(old.uid, old.password)
    assert dovecot_cached.login(new.uid, new.password)


def test_a_cached_mailbox_forgets_the_old_password_once_the_new_one_is_used(dovecot_cached, slapd, make_person):
    """Fact: the cache keeps one password a login; one it does not hold is asked of the directory."""
    old = make_person()
    assert dovecot_cached.login(old.uid, old.password)
    new = change_password(slapd, old, "Nowe-haslo-po-zmianie-w-cache-3")
    assert dovecot_cached.login(new.uid, new.password)
    assert not dovecot_cached.login(old.uid, old.password)


def test_a_cached_sign_on_keeps_the_old_password(slapd, make_person, start_client):
    sso = start_client(ApacheLdap(slapd, cache_ttl=600))
    try:
        old = make_person()
        assert sso.login(old.uid, old.password)
        new = change_password(slapd, old, "Nowe-haslo-po-zmianie-w-sso-4")
        assert sso.login(old.uid, old.password), "mod_ldap's cache answered for the old password"
        assert sso.login(new.uid, new.password)
    finally:
        sso.close()


def test_a_polish_password_with_a_no_break_space_works_byte_for_byte(dovecot, apache_sso, make_person):
    person = make_person(password=POLISH_PASSWORD)
    assert dovecot.login(person.uid, POLISH_PASSWORD)
    assert dovecot.login(person.uid, POLISH_PASSWORD, mechanism="LOGIN")
    assert apache_sso.login(person.uid, POLISH_PASSWORD)
    # Neither server normalises: an ordinary space, or "ó" decomposed, is another password.
    for other in (POLISH_PASSWORD.replace("\u00a0", " "), POLISH_PASSWORD.replace("ó", "o\u0301")):
        assert not dovecot.login(person.uid, other)
        assert not apache_sso.login(person.uid, other)


def test_five_failed_mailbox_logins_lock_the_account(dovecot, apache_sso, slapd, make_person):
    person = make_person()
    for _ in range(sandbox.POLICY_MAX_FAILURE - 1):
        assert not dovecot.login(person.uid, "Zle-haslo-z-telefonu-0")
    assert not password_state(slapd, person.dn)["pwdAccountLockedTime"]
    assert dovecot.login(person.uid, "Zle-haslo-z-telefonu-0") is False
    assert password_state(slapd, person.dn)["pwdAccountLockedTime"]
    assert not dovecot.login(person.uid, person.password)
    assert not apache_sso.login(person.uid, person.password)


def test_a_password_marked_for_change_still_opens_mailbox_and_sign_on(dovecot, apache_sso, slapd, make_person):
    """Fact: neither client asks for the ppolicy control, so pwdReset does not stop them."""
    policy = slapd.add_policy("clients-must-change", pwdMustChange="TRUE")
    person = make_person()
    slapd.set_policy(person.dn, policy)
    slapd.modify(f"dn: {person.dn}\nchangetype: modify\nreplace: pwdReset\npwdReset: TRUE\n", relax=True)
    assert dovecot.login(person.uid, person.password)
    assert apache_sso.login(person.uid, person.password)


def test_an_expired_password_without_grace_is_refused(dovecot, apache_sso, slapd, make_person):
    policy = slapd.add_policy("clients-expired-nograce", pwdMaxAge=60, pwdGraceAuthNLimit=0)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    assert not dovecot.login(person.uid, person.password)
    assert not apache_sso.login(person.uid, person.password)


@pytest.mark.parametrize("client", ["dovecot", "apache_sso"])
def test_each_login_with_an_expired_password_uses_up_a_grace_login(client, request, slapd, make_person):
    server = request.getfixturevalue(client)
    policy = slapd.add_policy(f"clients-grace-{client}", pwdMaxAge=60, pwdGraceAuthNLimit=2)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    assert server.login(person.uid, person.password)
    assert len(password_state(slapd, person.dn)["pwdGraceUseTime"]) == 1
    assert server.login(person.uid, person.password)
    assert len(password_state(slapd, person.dn)["pwdGraceUseTime"]) == 2
    assert not server.login(person.uid, person.password)


def test_a_cached_mailbox_does_not_use_up_grace_logins(dovecot_cached, slapd, make_person):
    policy = slapd.add_policy("clients-grace-cached", pwdMaxAge=60, pwdGraceAuthNLimit=2)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    for _ in range(4):
        assert dovecot_cached.login(person.uid, person.password)
    assert len(password_state(slapd, person.dn)["pwdGraceUseTime"]) == 1


@pytest.mark.parametrize("server_class", [Dovecot, ApacheLdap])
def test_a_server_stops_without_leaving_processes_or_files(server_class, slapd, start_client):
    server = start_client(server_class(slapd))
    pgid, root = server.process.pid, server.root
    server.close()
    assert not _live_members(pgid)
    assert not os.path.exists(root)


def test_a_missing_package_fails_the_test_with_the_way_out(slapd, monkeypatch, start_client):
    monkeypatch.setattr(Dovecot, "needs", (("/nonexistent/dovecot", "dovecot-imapd"),))
    with pytest.raises(pytest.fail.Exception, match="dovecot-imapd is not installed; run scripts/setup.sh"):
        start_client(Dovecot(slapd))
