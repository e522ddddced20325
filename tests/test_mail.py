"""The mail queue: delivery off the request path, retries, timeouts, and draining at shutdown."""

import json
import socket
import subprocess
import sys
import textwrap

import pytest

from pwdrst import sandbox
from pwdrst.sandbox import SmtpSink, free_port

JAN = sandbox.SAMPLE_PEOPLE[0]


def test_shutdown_delivers_pending_mail_first(make_app, reset_flow, make_person):
    slow = SmtpSink(delay=0.3).start()
    try:
        app = make_app(MAIL_PORT=slow.port, MAIL_WORKERS=1)
        person = make_person()
        client = app.test_client()
        for _ in range(3):
            reset_flow.request(person.uid, client=client)
        queue = app.extensions["pwdrst.mail"]
        assert queue.pending() >= 1
        assert queue.drain(timeout=10) is True
        assert len(slow.messages) == 3
    finally:
        slow.stop()


def test_shutdown_with_smtp_down_logs_each_undelivered_recipient(server_settings, project_root):
    """A real process exits with mail pending and no SMTP server: each recipient is logged as an error."""
    settings = server_settings(
        MAIL_PORT=free_port(), MAIL_SHUTDOWN_GRACE=1, MAIL_RETRY_DELAYS=[30, 30], WTF_CSRF_ENABLED=False
    )
    script = textwrap.dedent(
        """
        import json, logging, sys
        from pwdrst import create_app
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        app = create_app(json.loads(sys.argv[1]))
        assert app.test_client().post("/reset", data={"identifier": sys.argv[2]}).status_code == 303
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(settings), JAN.uid],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=project_root,
    )
    assert result.returncode == 0, result.stderr
    assert f"mail reset to {JAN.recovery[0]} undelivered at shutdown" in result.stderr


def test_hung_smtp_server_times_out_and_the_mail_is_retried(make_app, reset_flow, make_person, caplog, wait_until):
    """A server that accepts and never greets: each attempt gives up after MAIL_TIMEOUT."""
    person = make_person()
    recipient = person.recovery[0]
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        app = make_app(MAIL_PORT=hung.getsockname()[1], MAIL_TIMEOUT=1, MAIL_RETRY_DELAYS=[0.2])
        queue = app.extensions["pwdrst.mail"]
        reset_flow.request(person.uid, client=app.test_client())
        # Two attempts, each given up after MAIL_TIMEOUT: not a worker stuck forever.
        wait_until(lambda: queue.pending() == 0, "the mail worker never gave up on the hung server")
        assert f"mail reset to {recipient} failed (attempt 1:" in caplog.text
        assert "timed out" in caplog.text
        assert f"mail reset to {recipient} undelivered after 2 attempts" in caplog.text
        assert queue.failed == 1


# -- the wire form: our messages written without the email package


def wire_of(rendered):
    from pwdrst import mail

    assert isinstance(rendered, mail.Rendered)
    wire = rendered.wire()
    assert wire is not None
    return wire


def test_the_wire_form_reads_back_as_the_rendered_mail(pure_app):
    import email
    import email.policy
    from datetime import UTC, datetime

    from pwdrst import mail

    account = sandbox.account_of(JAN)
    with pure_app.test_request_context():
        rendered = mail.password_changed.draft(account, "192.0.2.1", datetime(2026, 12, 3, tzinfo=UTC)).render(pure_app)
    wire = wire_of(rendered)
    parsed = email.message_from_bytes(wire.data, policy=email.policy.default)
    assert parsed["Subject"] == rendered.subject and "ł" in rendered.subject
    assert parsed["From"].addresses[0].display_name == "Hasła"
    assert wire.sender == parsed["From"].addresses[0].addr_spec == "hasla@uni.example"
    assert [a.addr_spec for a in parsed["To"].addresses] == rendered.recipients == wire.recipients
    assert parsed.get_body(preferencelist=("plain",)).get_content() == rendered.body
    assert parsed.get_body(preferencelist=("html",)).get_content() == rendered.html
    assert parsed["Message-ID"].endswith("@uni.example>") and parsed["Date"].datetime.tzinfo is not None
    lines = wire.data.split(b"\r\n")
    assert b"\n" not in b"".join(lines)  # every line ends with CRLF, as SMTP wants
    assert max(len(line) for line in lines) <= 78


def test_a_subject_with_line_breaks_cannot_add_a_header(pure_app):
    import email
    import email.policy

    from pwdrst import mail

    rendered = mail.Rendered(
        subject="Hasło\r\nBcc: thief@attacker.example\r\n\r\nbody",
        sender="Hasła <hasla@uni.example>",
        recipients=["ewa@uni.example"],
        body="treść",
        html="<p>treść</p>",
    )
    parsed = email.message_from_bytes(wire_of(rendered).data, policy=email.policy.default)
    assert parsed["Bcc"] is None and "thief@attacker.example" in parsed["Subject"]
    assert parsed.get_body(preferencelist=("plain",)).get_content() == "treść"


@pytest.mark.parametrize(
    "recipient", ["ewa@żółw.example", '"ewa kowalska"@uni.example', "ewa@uni.example\r\nBcc: x@y.example", ""]
)
def test_an_address_the_wire_form_does_not_cover_goes_through_flask_mail(recipient):
    from pwdrst import mail

    rendered = mail.Rendered("Temat", "Hasła <hasla@uni.example>", [recipient], "a", "<p>a</p>")
    assert rendered.wire() is None


def test_both_forms_are_delivered_to_a_real_smtp_server(app, smtp):
    from pwdrst import mail

    account = sandbox.account_of(JAN)
    with app.test_request_context():
        mail.recovery_changed(account, ["ewa@uni.example"], "192.0.2.1")  # the wire form
        mail.recovery_changed(account, ["ewa@żółw.example"], "192.0.2.1")  # an IDN domain: Flask-Mail
    delivered = {m["To"]: m for m in smtp.delivered(app)}
    assert set(delivered) == {"ewa@uni.example", "ewa@xn--w-uga1v8h.example"}
    assert delivered["ewa@uni.example"].get_boundary().startswith("=_pwdrst_")
    assert not delivered["ewa@xn--w-uga1v8h.example"].get_boundary().startswith("=_pwdrst_")
    texts = {to: smtp.text(m) for to, m in delivered.items()}
    assert texts["ewa@uni.example"] == texts["ewa@xn--w-uga1v8h.example"].replace("\r\n", "\n")
