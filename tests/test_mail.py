"""The mail queue: delivery off the request path, retries, timeouts, and draining at shutdown."""

import json
import socket
import subprocess
import sys
import textwrap

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
