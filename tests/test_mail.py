"""The mail queue: delivery off the request path, retries, timeouts, and draining at shutdown."""

import socket
import subprocess
import sys
import textwrap
import time

from pwdrst import create_app
from pwdrst.sandbox import SmtpSink, free_port
from tests.conftest import ROOT, base_config, submit


def test_shutdown_delivers_pending_mail_first(slapd, make_person):
    slow = SmtpSink(delay=0.3).start()
    try:
        app = create_app(base_config(slapd, slow, MAIL_WORKERS=1))
        person = make_person()
        client = app.test_client()
        for _ in range(3):
            submit(client, "/reset", {"identifier": person.uid})
        queue = app.extensions["pwdrst.mail"]
        assert queue.pending() >= 1
        assert queue.drain(timeout=10) is True
        assert len(slow.messages) == 3
    finally:
        slow.stop()


def test_shutdown_with_smtp_down_logs_each_undelivered_recipient(slapd, smtp):
    """A real process exits with mail pending and no SMTP server: each recipient is logged as an error."""
    script = textwrap.dedent(
        f"""
        import logging, sys
        sys.path.insert(0, {ROOT!r})
        from tests.conftest import base_config
        from pwdrst import create_app
        from pwdrst.mail import MailQueue
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)

        class Fake:
            url = {slapd.url!r}
            port = {free_port()}

        app = create_app(base_config(Fake, Fake, MAIL_SHUTDOWN_GRACE=1, MAIL_RETRY_DELAYS=[30]))
        with app.test_request_context():
            from pwdrst import mail
            mail.send("reset", ["waiting.person@private.example"], "subject", "reset", link="x", login="l",
                      display_name="d", minutes=60, hours=1, issued_by=None)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert "mail reset to waiting.person@private.example undelivered at shutdown" in result.stderr


def test_hung_smtp_server_times_out_and_the_mail_is_retried(slapd, smtp, caplog):
    """A server that accepts and never greets: each attempt gives up after MAIL_TIMEOUT."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)

        class HungSmtp:
            port = hung.getsockname()[1]

        app = create_app(base_config(slapd, HungSmtp, MAIL_TIMEOUT=1, MAIL_RETRY_DELAYS=[0.2]))
        with app.test_request_context():
            from pwdrst import mail

            mail.send(
                "reset",
                ["patient.person@private.example"],
                "subject",
                "reset",
                link="x",
                login="l",
                display_name="d",
                minutes=60,
                hours=1,
                issued_by=None,
            )
        queue = app.extensions["pwdrst.mail"]
        started = time.monotonic()
        while "undelivered after 2 attempts" not in caplog.text and time.monotonic() - started < 10:
            time.sleep(0.1)
        # Two attempts, each given up after MAIL_TIMEOUT (1 s): not a worker stuck forever.
        assert time.monotonic() - started < 5
        assert "mail reset to patient.person@private.example failed (attempt 1:" in caplog.text
        assert "timed out" in caplog.text
        assert "mail reset to patient.person@private.example undelivered after 2 attempts" in caplog.text
        assert queue.failed == 1 and queue.pending() == 0
