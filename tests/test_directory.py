"""The directory layer against a real slapd: lookups, binds, policy refusals, outages."""

import socket
import threading

import pytest

from pwdrst import sandbox
from pwdrst.directory import (
    AccountLocked,
    AmbiguousAccount,
    DirectoryUnavailable,
    InvalidCredentials,
    PasswordExpired,
    PasswordRejected,
    decode_policy_control,
)
from pwdrst.sandbox import free_port


@pytest.fixture
def directory(app):
    """The app's directory layer, wired to the test slapd."""
    return app.extensions["pwdrst.directory"]


@pytest.fixture
def directory_for(make_app):
    """Return directory_for(urls, timeout=1): the directory layer of an app with these servers."""

    def make(urls, timeout=1):
        return make_app(LDAP_URL=urls, LDAP_TIMEOUT=timeout).extensions["pwdrst.directory"]

    return make


@pytest.fixture
def hung_server():
    """The URL of a server that accepts connections (the kernel does) but never reads or answers."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        yield f"ldap://127.0.0.1:{hung.getsockname()[1]}"


# -- lookups


def test_login_finds_the_account(directory):
    account = directory.find_account("jkowalski")
    assert account.login == "jkowalski"
    assert account.display_name == "Jan Kowalski"
    assert account.recovery_addresses == ("jan.kowalski@private.example",)


@pytest.mark.parametrize(
    "alias", ["jan.kowalski@uni.example", "jkowalski@uni.example", "Jan.Kowalski@Student.Uni.Example"]
)
def test_any_alias_finds_the_account_case_insensitively(directory, alias):
    account = directory.find_account(alias)
    assert account.dn == "uid=jkowalski,ou=people,dc=uni,dc=example"
    assert len(account.addresses) == 3


def test_unknown_identifier_finds_nothing(directory):
    assert directory.find_account("nobody@uni.example") is None


def test_recovery_address_is_not_a_login(directory):
    assert directory.find_account("jan.kowalski@private.example") is None


@pytest.mark.parametrize(
    "hostile",
    [
        "*",
        "*)(uid=*",
        "jkowalski)(|(uid=*",
        "jkowalski\\",
        "\\2a",
        "jkow\x00alski",
        "j*",
        "(uid=jkowalski)",
        "x" * 5000,
    ],
)
def test_injection_strings_find_nothing_and_raise_nothing(directory, hostile):
    assert directory.find_account(hostile) is None


def test_shared_address_is_ambiguous(directory):
    with pytest.raises(AmbiguousAccount) as caught:
        directory.find_account("t.lewandowski@uni.example")
    assert len(caught.value.dns) == 2


def test_group_membership(directory):
    staff = directory.find_account("mzielinska")
    student = directory.find_account("jkowalski")
    assert directory.is_member(staff, sandbox.HELPDESK_GROUP)
    assert not directory.is_member(student, sandbox.HELPDESK_GROUP)
    assert not directory.is_member(student, None)


def test_recovery_addresses_are_read_and_replaced(directory, make_person):
    person = make_person()
    account = directory.find_account(person.uid)
    directory.set_recovery_addresses(account, ["nowy@private.example", "drugi@private.example"])
    stored = directory.get_account(account.login).recovery_addresses
    assert set(stored) == {"nowy@private.example", "drugi@private.example"}
    directory.set_recovery_addresses(account, [])
    assert directory.get_account(account.login).recovery_addresses == ()


# -- binds


def test_authenticate_with_the_right_password(directory, make_person):
    person = make_person()
    auth = directory.authenticate(person.mail[1], person.password)
    assert auth.account.login == person.uid


def test_wrong_password_is_invalid_credentials(directory, make_person):
    person = make_person()
    with pytest.raises(InvalidCredentials):
        directory.authenticate(person.uid, "not-the-password")


def test_unknown_login_is_invalid_credentials(directory):
    with pytest.raises(InvalidCredentials):
        directory.authenticate("nobody", "whatever-password")


def test_empty_password_never_binds_anonymously(directory, make_person):
    person = make_person()
    with pytest.raises(InvalidCredentials):
        directory.authenticate(person.uid, "")


def test_locked_account_after_the_policy_failure_count(directory, make_person):
    person = make_person()
    for _ in range(sandbox.POLICY_MAX_FAILURE):
        with pytest.raises(InvalidCredentials):
            directory.authenticate(person.uid, "wrong-password")
    with pytest.raises(AccountLocked):
        directory.authenticate(person.uid, person.password)
    assert directory.find_account(person.uid).locked


def test_expired_password_without_grace_is_recognised_as_right(directory, slapd, make_person):
    policy = slapd.add_policy("expire-nograce", pwdMaxAge=60, pwdGraceAuthNLimit=0)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    with pytest.raises(PasswordExpired) as caught:
        directory.authenticate(person.uid, person.password)
    assert caught.value.grace_remaining == 0
    assert not caught.value.bound
    assert directory.find_account(person.uid).password_expired
    # A wrong password on an expired account is still just wrong.
    with pytest.raises(InvalidCredentials):
        directory.authenticate(person.uid, "wrong-password")


def test_expired_password_with_grace_logins_left(directory, slapd, make_person):
    policy = slapd.add_policy("expire-grace", pwdMaxAge=60, pwdGraceAuthNLimit=3)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    with pytest.raises(PasswordExpired) as caught:
        directory.authenticate(person.uid, person.password)
    assert caught.value.bound
    assert caught.value.grace_remaining == 2


# -- changes


def test_change_password_as_the_person(directory, make_person, can_bind):
    person = make_person()
    account = directory.find_account(person.uid)
    assert directory.change_password(account, person.password, "Nowe-haslo-calkiem-inne-1") is False
    assert can_bind(person.dn, b"Nowe-haslo-calkiem-inne-1")
    assert not can_bind(person.dn, person.password.encode())


def test_change_with_wrong_current_password_is_refused(directory, make_person, can_bind):
    person = make_person()
    account = directory.find_account(person.uid)
    with pytest.raises(InvalidCredentials):
        directory.change_password(account, "not-the-password", "Nowe-haslo-calkiem-inne-2")
    assert can_bind(person.dn, person.password.encode())


def test_password_in_history_is_refused(directory, make_person, can_bind):
    person = make_person()
    account = directory.find_account(person.uid)
    directory.change_password(account, person.password, "Drugie-haslo-do-historii-1")
    with pytest.raises(PasswordRejected) as caught:
        directory.change_password(account, "Drugie-haslo-do-historii-1", person.password)
    assert caught.value.reason == "in_history"
    assert can_bind(person.dn, b"Drugie-haslo-do-historii-1")


def test_password_too_short_for_the_server_is_refused(directory, make_person, can_bind):
    person = make_person()
    account = directory.find_account(person.uid)
    with pytest.raises(PasswordRejected) as caught:
        directory.change_password(account, person.password, "krótki")  # 7 bytes, under pwdMinLength 8
    assert caught.value.reason == "too_short"
    with pytest.raises(PasswordRejected) as caught:
        directory.reset_password(account, "abc")
    assert caught.value.reason == "too_short"
    assert can_bind(person.dn, person.password.encode())


def test_password_changed_too_recently_is_refused(directory, slapd, make_person):
    policy = slapd.add_policy("min-age", pwdMinAge=3600, pwdInHistory=5)
    person = make_person()
    slapd.set_policy(person.dn, policy)
    account = directory.find_account(person.uid)
    directory.change_password(account, person.password, "Pierwsza-zmiana-hasla-1")
    with pytest.raises(PasswordRejected) as caught:
        directory.change_password(account, "Pierwsza-zmiana-hasla-1", "Druga-zmiana-hasla-2")
    assert caught.value.reason == "too_young"


def test_expired_password_is_changed_by_the_service_account(directory, slapd, make_person, can_bind):
    policy = slapd.add_policy("expire-change", pwdMaxAge=60, pwdGraceAuthNLimit=0)
    person = make_person()
    slapd.expire_password(person.dn, policy)
    account = directory.find_account(person.uid)
    assert directory.change_password(account, person.password, "Po-wygasnieciu-nowe-1") is True
    assert can_bind(person.dn, b"Po-wygasnieciu-nowe-1")
    with pytest.raises(InvalidCredentials):
        directory.change_password(directory.find_account(person.uid), "wrong-password", "Po-wygasnieciu-nowe-2")


def test_reset_by_the_service_account_unlocks_and_checks_quality(directory, make_person, can_bind):
    person = make_person()
    for _ in range(sandbox.POLICY_MAX_FAILURE + 1):
        with pytest.raises((InvalidCredentials, AccountLocked)):
            directory.authenticate(person.uid, "wrong-password")
    account = directory.find_account(person.uid)
    assert account.locked
    directory.reset_password(account, "Reset-przez-serwis-123")
    assert can_bind(person.dn, b"Reset-przez-serwis-123")
    assert not directory.find_account(person.uid).locked


def test_reset_may_be_told_not_to_unlock(directory, make_person):
    person = make_person()
    for _ in range(sandbox.POLICY_MAX_FAILURE + 1):
        with pytest.raises((InvalidCredentials, AccountLocked)):
            directory.authenticate(person.uid, "wrong-password")
    with pytest.raises(PasswordRejected) as caught:
        directory.reset_password(directory.find_account(person.uid), "Reset-przez-serwis-456", unlock=False)
    assert caught.value.reason == "locked"


def test_passwords_go_to_the_server_as_utf8_bytes_not_saslprep(directory, make_person, can_bind):
    # SASLprep would drop the soft hyphen and map the em space to a plain space.
    password = "Hasło\u00adze\u2003spacją-i-łącznikiem"
    person = make_person()
    directory.reset_password(directory.find_account(person.uid), password)
    assert can_bind(person.dn, password.encode("utf-8"))
    assert not can_bind(person.dn, "Hasłoze spacją-i-łącznikiem".encode())
    assert directory.authenticate(person.uid, password).account.login == person.uid


def test_fingerprint_changes_with_every_password_change(directory, make_person):
    person = make_person()
    account = directory.find_account(person.uid)
    assert directory.find_account(person.uid).fingerprint == account.fingerprint
    directory.reset_password(account, "Pierwszy-reset-hasla-1")
    first = directory.find_account(person.uid).fingerprint
    directory.reset_password(account, "Drugi-reset-hasla-w-tej-samej-sekundzie-2")
    second = directory.find_account(person.uid).fingerprint
    assert len({account.fingerprint, first, second}) == 3


# -- the policy control


def test_policy_control_decoding():
    assert decode_policy_control(b"0\x03\x81\x01\x01").error == 1
    assert decode_policy_control(b"0\x05\xa0\x03\x81\x01\x02").grace_remaining == 2
    assert decode_policy_control(b"0\x06\xa0\x04\x80\x02\x0e\x10").time_before_expiration == 3600
    assert decode_policy_control(b"0\x00").error is None
    assert decode_policy_control(b"\xff\xff").error is None  # garbage is no answer, not a crash
    assert decode_policy_control(None).error is None


# -- outages


def test_stopped_server_is_unavailable_and_a_restart_is_picked_up(own_slapd, directory_for):
    directory = directory_for([own_slapd.url])
    assert directory.find_account("jkowalski")
    own_slapd.stop()
    with pytest.raises(DirectoryUnavailable):
        directory.find_account("jkowalski")
    with pytest.raises(DirectoryUnavailable):
        directory.authenticate("jkowalski", "whatever-password")
    own_slapd.start()
    assert directory.find_account("jkowalski").login == "jkowalski"


def test_failover_to_the_second_server(slapd, directory_for):
    directory = directory_for([f"ldap://127.0.0.1:{free_port()}", slapd.url])
    assert directory.find_account("jkowalski").login == "jkowalski"
    person = sandbox.SAMPLE_PEOPLE[0]
    assert directory.authenticate(person.uid, person.password).account.login == person.uid


def test_hung_server_gives_unavailable_within_the_timeout(hung_server, directory_for, bounded):
    directory = directory_for([hung_server], timeout=1)
    with pytest.raises(DirectoryUnavailable):
        bounded(directory.find_account, "jkowalski")  # LDAP_TIMEOUT ends the wait, or this fails


def test_hung_first_server_then_the_next_request_uses_the_second(hung_server, slapd, directory_for, bounded):
    directory = directory_for([hung_server, slapd.url], timeout=1)
    with pytest.raises(DirectoryUnavailable):
        bounded(directory.find_account, "jkowalski")
    assert directory.find_account("jkowalski").login == "jkowalski"


def test_connections_are_reused_per_thread(directory):
    directory.find_account("jkowalski")
    first = directory.pool._local.service[1]
    directory.find_account("anowak")
    assert directory.pool._local.service[1] is first
    seen = []
    thread = threading.Thread(
        target=lambda: (directory.find_account("anowak"), seen.append(directory.pool._local.service[1]))
    )
    thread.start()
    thread.join()
    assert seen[0] is not first
    assert len(directory.pool._open_connections) == 2


def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents_alone(directory):
    import os

    assert directory.get_account("jkowalski") is not None  # the parent's connection is open
    _, before = directory.pool._local.service
    pid = os.fork()
    if pid == 0:  # the child: work on its own connection, then leave without cleaning up
        code = 3
        try:
            directory.after_fork()
            account = directory.get_account("jkowalski")
            code = 0 if account is not None and directory.pool._local.service[1] is not before else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection still answers: the child never unbound it (a close() would have).
    assert directory.get_account("msmith") is None and directory.get_account("anowak") is not None
    assert directory.pool._local.service[1] is before
