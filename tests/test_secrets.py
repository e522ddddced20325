"""No password, token, password hash or service-account password in any log, audit line, page or mail."""

import logging
import re

import ldap3
import pytest

from pwdrst import sandbox

STAFF = sandbox.SAMPLE_PEOPLE[3]


class Recorder:
    """A test client wrapper that keeps every response body."""

    def __init__(self, client):
        self.client = client
        self.pages: list[str] = []

    def __getattr__(self, name):
        method = getattr(self.client, name)
        if name not in ("get", "post", "open"):
            return method

        def call(*args, **kwargs):
            response = method(*args, **kwargs)
            self.pages.append(response.get_data(as_text=True))
            return response

        return call


def link_token(smtp, to):
    """Wait for the newest mail to `to` that carries a link; return the link's token."""
    _, link = smtp.wait_for_link(to)
    return link.rsplit("/", 1)[1]


def stored_hashes(slapd, dns) -> list[str]:
    conn = ldap3.Connection(ldap3.Server(slapd.url), sandbox.ADMIN_DN, sandbox.ADMIN_PASSWORD, auto_bind=True)
    hashes = []
    for dn in dns:
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["userPassword"])
        hashes += [v.decode() if isinstance(v, bytes) else str(v) for v in conn.entries[0].userPassword.values]
    conn.unbind()
    return hashes


def test_no_secret_leaks_from_any_flow(slapd, smtp, make_app, make_person, submit, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    audit_file = tmp_path / "audit.jsonl"
    app = make_app(AUDIT_LOG=str(audit_file))
    person = make_person()
    second = make_person()
    secrets = {person.password, second.password, sandbox.SERVICE_PASSWORD, STAFF.password}
    changed, reset_to, helpdesk_set, cli_set = (
        "Zmiana-hasla-w-formularzu-11",
        "Nowe-haslo-z-linku-mailowego-22",
        "Haslo-z-linku-pomocy-it-33",
        "Haslo-z-linku-administratora-44",
    )
    secrets |= {changed, reset_to, helpdesk_set, cli_set, "wrong-password-typed"}
    hashes = stored_hashes(slapd, [person.dn, second.dn])

    user = Recorder(app.test_client())
    # Login: a wrong password, then the right one; change; recovery address.
    submit(user, "/login", {"identifier": person.uid, "password": "wrong-password-typed"})
    submit(user, "/login", {"identifier": person.uid, "password": person.password})
    submit(user, "/password", {"current_password": person.password, "new_password": "short", "confirm": "short"})
    submit(user, "/password", {"current_password": person.password, "new_password": changed, "confirm": changed})
    submit(user, "/recovery", {"address": "zapasowy.adres@mail.example", "current_password": "wrong-password-typed"})
    submit(user, "/recovery", {"address": "zapasowy.adres@mail.example", "current_password": changed})
    # Reset by link, from the request page.
    anonymous = Recorder(app.test_client())
    submit(anonymous, "/reset", {"identifier": person.mail[0]})
    reset_token = link_token(smtp, person.recovery[0])
    anonymous.get("/reset/" + reset_token)
    submit(anonymous, "/reset/new", {"new_password": reset_to, "confirm": reset_to})
    anonymous.get("/reset/" + reset_token)  # refused now: the error page must not echo it
    # The helpdesk issues a link for the second person; the CLI prints one.
    staff = Recorder(app.test_client())
    submit(staff, "/login", {"identifier": STAFF.uid, "password": STAFF.password})
    submit(
        staff,
        f"/helpdesk/account/{second.uid}/link",
        {"delivery": "recovery"},
        form_url=f"/helpdesk/account/{second.uid}",
    )
    helpdesk_token = link_token(smtp, second.recovery[0])
    other = Recorder(app.test_client())
    other.get("/reset/" + helpdesk_token)
    submit(other, "/reset/new", {"new_password": helpdesk_set, "confirm": helpdesk_set})
    cli = app.test_cli_runner().invoke(args=["issue-link", second.uid, "--print"])
    cli_token = cli.output.strip().split("/")[-1]
    other.get("/reset/" + cli_token)
    submit(other, "/reset/new", {"new_password": cli_set, "confirm": cli_set})
    app.extensions["pwdrst.mail"].drain(10)

    recovery_token = link_token(smtp, "zapasowy.adres@mail.example")
    tokens = {reset_token, helpdesk_token, cli_token, recovery_token}
    hashes += stored_hashes(slapd, [person.dn, second.dn])
    assert len(tokens) == 4 and all(len(t) > 40 for t in tokens)

    logs = caplog.text + "\n" + audit_file.read_text(encoding="utf-8")
    pages = "\n".join(user.pages + anonymous.pages + staff.pages + other.pages)
    assert audit_file.read_text(encoding="utf-8").count("\n") >= 10
    for secret in secrets | tokens | set(hashes):
        assert secret not in logs, f"in the logs: {secret[:6]}..."
        assert secret not in pages, f"in a page: {secret[:6]}..."
    assert not re.search(r"\{(SSHA|SHA|CRYPT|ARGON2|PBKDF2)[^}]*\}", logs + pages)
    for message in smtp.messages:
        body = smtp.text(message) + smtp.html(message)
        carried = {t for t in tokens if t in body}
        assert len(carried) <= 1, "a mail carries more than its own link"
        for secret in secrets | set(hashes):
            assert secret not in body
        if carried:
            assert message["Subject"].startswith(("Ustaw nowe hasło", "Potwierdź adres awaryjny"))


@pytest.mark.parametrize("path", ["/reset/abc.def.ghi", "/recovery/abc.def.ghi"])
def test_refused_link_pages_do_not_echo_the_token(client, path):
    response = client.get(path)
    follow = client.get(response.headers["Location"]) if response.status_code in (302, 303) else response
    assert "abc.def.ghi" not in follow.get_data(as_text=True)
