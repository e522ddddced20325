"""The Samba AD sandbox itself, checked with ldap3 directly (not through pwdrst's Directory)."""

import itertools
import socket
import ssl

import ldap3
import pytest

from pwdrst import sandbox
from pwdrst.sandbox import SAMPLE_PEOPLE, Person
from pwdrst.sandbox_samba import (
    ADMIN_DN,
    ADMIN_GROUP,
    ADMIN_PASSWORD,
    BASE_DN,
    HELPDESK_GROUP,
    OTHER_DN,
    PEOPLE_DN,
    PROTECTED_GROUP,
    SERVICE_DN,
    SERVICE_PASSWORD,
    quoted_password,
)

_serial = itertools.count(1)
PEOPLE = {p.uid: p for p in SAMPLE_PEOPLE}


@pytest.fixture
def connect(samba):
    """Open LDAPS connections bound as someone (None: anonymous), verified by the sandbox's CA."""
    opened = []

    def open_(dn=None, password=None, host="127.0.0.1"):
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=samba.ca_file)
        server = ldap3.Server(host, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=5)
        conn = ldap3.Connection(server, dn, password.encode("utf-8") if password else None, receive_timeout=10)
        opened.append(conn)
        if dn is None:
            conn.open()
        else:
            conn.bind()
        return conn

    yield open_
    for conn in opened:
        conn.unbind()


@pytest.fixture
def service(connect):
    conn = connect(SERVICE_DN, SERVICE_PASSWORD)
    assert conn.bound, conn.result
    return conn


@pytest.fixture
def person(samba):
    """A fresh person in OU=people whose password a test may change."""
    n = next(_serial)
    return samba.add_person(
        Person(
            f"adtest{n}",
            "Ewa",
            f"Testowa{n}",
            f"Bardzo-dlugie-haslo-testowe-{n}",
            (f"ewa.testowa{n}@uni.example", f"adtest{n}@uni.example"),
            (f"ewa.testowa{n}@private.example",),
        )
    )


def read(conn, dn, *attributes):
    assert conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(attributes)), conn.result
    return conn.response[0]["attributes"]


def reset(conn, dn, password):
    conn.modify(dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [quoted_password(password)])]})
    return conn.result


def change(conn, dn, old, new):
    changes = [(ldap3.MODIFY_DELETE, [quoted_password(old)]), (ldap3.MODIFY_ADD, [quoted_password(new)])]
    conn.modify(dn, {"unicodePwd": changes})
    return conn.result


@pytest.mark.parametrize("login", sorted(PEOPLE))
def test_sample_person_binds_over_ldaps_with_the_sample_password(samba, connect, login):
    conn = connect(samba.dn(login), PEOPLE[login].password)
    assert conn.bound, conn.result


def test_wrong_password_is_refused_with_ad_data_code(samba, connect):
    conn = connect(samba.dn("anowak"), "Nie-to-haslo-1")
    assert not conn.bound
    assert conn.result["result"] == 49 and "data 52e" in conn.result["message"]


def test_sample_person_has_addresses_and_recovery_address_as_documented(samba, service):
    jan = PEOPLE["jkowalski"]
    attrs = read(
        service, samba.dn(jan), "sAMAccountName", "userPrincipalName", "mail", "proxyAddresses", "otherMailbox"
    )
    # Without the server's schema (get_info=NONE, as pwdrst reads) every value comes as a list.
    assert attrs["sAMAccountName"] == ["jkowalski"]
    assert attrs["userPrincipalName"] == ["jkowalski@uni.example"]
    assert attrs["mail"] == [jan.mail[0]]
    assert sorted(attrs["proxyAddresses"]) == sorted([f"SMTP:{jan.mail[0]}"] + [f"smtp:{m}" for m in jan.mail[1:]])
    assert attrs["otherMailbox"] == list(jan.recovery)


def test_an_alias_is_found_in_proxy_addresses_with_the_smtp_prefix_only(samba, service):
    service.search(PEOPLE_DN, "(proxyAddresses=smtp:JKOWALSKI@uni.example)", attributes=["sAMAccountName"])
    assert [e["dn"] for e in service.response] == [samba.dn("jkowalski")]
    service.search(PEOPLE_DN, "(proxyAddresses=jkowalski@uni.example)", attributes=["sAMAccountName"])
    assert service.response == []


def test_groups_have_the_members_of_the_openldap_sample(samba, service):
    for group, sample_group in (
        (HELPDESK_GROUP, sandbox.HELPDESK_GROUP),
        (ADMIN_GROUP, sandbox.ADMIN_GROUP),
        (PROTECTED_GROUP, sandbox.PROTECTED_GROUP),
    ):
        expected = sorted(samba.dn(p) for p in SAMPLE_PEOPLE if sample_group in p.groups)
        assert sorted(read(service, group, "member")["member"]) == expected


def test_ca_verifies_the_certificate_for_127_0_0_1_and_localhost(samba):
    context = ssl.create_default_context(cafile=samba.ca_file)
    for name in ("127.0.0.1", "localhost"):
        with socket.create_connection(("127.0.0.1", 636), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                assert tls.version()


def test_a_wrong_host_name_fails_verification(samba):
    context = ssl.create_default_context(cafile=samba.ca_file)
    with socket.create_connection(("127.0.0.1", 636), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            context.wrap_socket(raw, server_hostname="dc.uni.example")


def test_the_system_cas_do_not_verify_the_sandbox_certificate(samba):
    with socket.create_connection(("127.0.0.1", 636), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


def test_service_account_resets_a_persons_password(samba, service, connect, person):
    assert reset(service, samba.dn(person), "Nowe-haslo-od-uslugi-1")["result"] == 0
    assert connect(samba.dn(person), "Nowe-haslo-od-uslugi-1").bound
    assert not connect(samba.dn(person), person.password).bound


def test_service_account_writes_the_recovery_address_and_clears_lockout_time(samba, service, connect, person):
    dn = samba.dn(person)
    service.modify(dn, {"otherMailbox": [(ldap3.MODIFY_REPLACE, ["ewa@private.example"])]})
    assert service.result["result"] == 0, service.result
    samba.lock(person)
    assert "data 775" in connect(dn, person.password).result["message"]
    service.modify(dn, {"lockoutTime": [(ldap3.MODIFY_REPLACE, ["0"])]})
    assert service.result["result"] == 0, service.result
    assert connect(dn, person.password).bound
    assert read(service, dn, "otherMailbox")["otherMailbox"] == ["ewa@private.example"]


@pytest.mark.parametrize(
    "attribute, value",
    [
        ("mail", "ktos@uni.example"),
        ("proxyAddresses", "smtp:ktos@uni.example"),
        ("displayName", "Ktoś Inny"),
        ("pwdLastSet", "0"),
        ("userAccountControl", "514"),
        ("description", "x"),
    ],
)
def test_service_account_cannot_write_other_attributes(samba, service, person, attribute, value):
    service.modify(samba.dn(person), {attribute: [(ldap3.MODIFY_REPLACE, [value])]})
    assert service.result["result"] == 50, service.result  # insufficientAccessRights


def test_service_account_cannot_reset_the_domain_administrator(service):
    assert reset(service, ADMIN_DN, "Przejete-haslo-admina-1")["result"] == 50


def test_service_account_cannot_reset_a_person_outside_the_people_ou(samba, service, connect):
    n = next(_serial)
    outsider = samba.add_person(
        Person(f"adother{n}", "Olga", f"Obca{n}", f"Haslo-poza-ou-people-{n}", (f"olga.obca{n}@uni.example",)),
        ou=OTHER_DN,
    )
    assert samba.dn(outsider).endswith(OTHER_DN)
    assert reset(service, samba.dn(outsider), "Przejete-haslo-obcej-1")["result"] == 50
    assert connect(samba.dn(outsider), outsider.password).bound


def test_delegation_covers_the_people_ou_whatever_the_groups(samba, service):
    # Admins and protected people in OU=people are within the delegation: pwdrst itself must
    # keep helpdesk staff away from them (the directory would not).
    admin = PEOPLE["kwojcik"]
    assert reset(service, samba.dn(admin), "Tymczasowe-haslo-admina-1")["result"] == 0
    samba.set_password(admin, admin.password)


def test_person_changes_their_own_password_by_delete_and_add(samba, connect, person):
    dn = samba.dn(person)
    conn = connect(dn, person.password)
    assert change(conn, dn, person.password, "Moje-nowe-haslo-testowe-1")["result"] == 0
    assert connect(dn, "Moje-nowe-haslo-testowe-1").bound
    assert not connect(dn, person.password).bound


def test_person_cannot_replace_their_own_password_without_the_old_one(samba, connect, person):
    dn = samba.dn(person)
    assert reset(connect(dn, person.password), dn, "Moje-nowe-haslo-testowe-2")["result"] == 50


def test_person_cannot_write_their_own_recovery_address(samba, connect, person):
    dn = samba.dn(person)
    conn = connect(dn, person.password)
    conn.modify(dn, {"otherMailbox": [(ldap3.MODIFY_REPLACE, ["moj@private.example"])]})
    assert conn.result["result"] == 50


@pytest.mark.parametrize(
    "state, data",
    [("lock", "775"), ("expire", "532"), ("must_change", "773")],
)
def test_account_states_give_their_bind_codes_with_the_right_password_only(samba, connect, person, state, data):
    dn = samba.dn(person)
    getattr(samba, state)(person)
    right = connect(dn, person.password)
    assert not right.bound and f"data {data}," in right.result["message"]
    wrong = connect(dn, "Nie-to-haslo-wcale-1")
    # AD says "locked" whatever the password; expired and must-change only to the right one.
    assert f"data {'775' if state == 'lock' else '52e'}," in wrong.result["message"]


def test_set_password_as_administrator(samba, connect, person):
    samba.set_password(person.uid, "Haslo-od-administratora-1")
    assert connect(samba.dn(person), "Haslo-od-administratora-1").bound


def test_password_settings_change_for_a_block_and_come_back(samba, connect, person):
    dn = samba.dn(person)
    admin = connect(ADMIN_DN, ADMIN_PASSWORD)
    with samba.password_settings(min_age=86400, min_length=12):
        assert read(admin, BASE_DN, "minPwdAge", "minPwdLength") == {
            "minPwdAge": ["-864000000000"],
            "minPwdLength": ["12"],
        }
        refused = change(connect(dn, person.password), dn, person.password, "Za-mlode-haslo-1")
        assert "too young" in refused["message"]
    assert read(admin, BASE_DN, "minPwdAge", "minPwdLength") == {"minPwdAge": ["0"], "minPwdLength": ["8"]}
    assert change(connect(dn, person.password), dn, person.password, "Juz-nie-za-mlode-haslo-1")["result"] == 0


def test_people_with_one_name_get_distinct_dns(samba):
    n = next(_serial)
    twins = [
        samba.add_person(
            Person(f"adtwin{n}{i}", "Jan", f"Bliźniak{n}", f"Haslo-bliznaka-{n}-{i}", (f"tw{n}{i}@uni.example",))
        )
        for i in (1, 2)
    ]
    assert samba.dn(twins[0]) == f"CN=Jan Bliźniak{n},{PEOPLE_DN}"
    assert samba.dn(twins[1]) == f"CN=Jan Bliźniak{n} (adtwin{n}2),{PEOPLE_DN}"


def test_settings_name_this_dc_for_an_ad_app(samba):
    settings = samba.app_settings("https://pwdrst.uni.example", 2525)
    assert settings["LDAP_FLAVOUR"] == "ad"
    assert settings["LDAP_URL"] == ["ldaps://127.0.0.1:636"]
    assert settings["LDAP_CA_FILE"] == samba.ca_file
    assert settings["LDAP_BIND_DN"] == SERVICE_DN
    assert settings["LDAP_RECOVERY_ATTRIBUTE"] == "otherMailbox"
    assert settings["MAIL_PORT"] == 2525
