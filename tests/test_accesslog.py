"""Gunicorn's access and error logs never hold a link token."""

import http.client
import subprocess
import sys
import urllib.request

from pwdrst.accesslog import redact
from pwdrst.sandbox import free_port, wait_for_port


def test_redact_takes_tokens_out_of_link_paths():
    assert redact("GET /reset/WyJhIl0.abc.def HTTP/1.1") == "GET /reset/[token] HTTP/1.1"
    assert redact("GET /pwdrst/recovery/WyJhIl0.abc?x=1 HTTP/1.1") == "GET /pwdrst/recovery/[token]?x=1 HTTP/1.1"
    for path in ("/reset/new", "/reset/sent", "/reset/done", "/recovery/confirm", "/recovery/remove", "/reset"):
        assert redact(f"GET {path} HTTP/1.1") == f"GET {path} HTTP/1.1"


def test_gunicorn_access_log_has_no_token(server_settings, environment, project_root, wait_until, tmp_path):
    port = free_port()
    env = environment(
        server_settings(TRUSTED_HOSTS=["127.0.0.1"]),
        PWDRST_GUNICORN_BIND=f"127.0.0.1:{port}",
        PWDRST_GUNICORN_WORKERS="1",
        PWDRST_GUNICORN_THREADS="2",
    )
    log = tmp_path / "gunicorn.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=project_root,
            env=env,
            stdout=out,
            stderr=out,
        )
        try:
            wait_for_port(port, timeout=30)
            token = "WyJzZWNyZXQtdG9rZW4iXQ.abcdef.ghijklmnopqrstuvwxyz012345678"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/reset/{token}", timeout=10)
            except urllib.error.HTTPError as refused:
                assert refused.code == 400
            wait_until(lambda: "/reset/[token]" in log.read_text(), "the request never reached the access log")
        finally:
            server.terminate()
            server.wait(30)
    text = log.read_text()
    assert "/reset/[token]" in text
    assert token not in text


def test_gunicorn_error_log_has_no_token_even_at_debug_level(
    app, server_settings, environment, project_root, wait_until, make_person, tmp_path
):
    from pwdrst import links

    person = make_person()
    with app.app_context():
        link = links.reset_link(app.extensions["pwdrst.directory"].get_account(person.uid))
    token = link.rsplit("/", 1)[1]
    port = free_port()
    env = environment(
        server_settings(),
        PWDRST_GUNICORN_BIND=f"127.0.0.1:{port}",
        PWDRST_GUNICORN_WORKERS="1",
        PWDRST_GUNICORN_THREADS="2",
    )
    env["PWDRST_TRUSTED_HOSTS"] = "127.0.0.1"
    env["PWDRST_GUNICORN_ACCESS_LOG"] = str(tmp_path / "access.log")
    errors = tmp_path / "error.log"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--log-level",
            "debug",
            "--error-logfile",
            str(errors),
            "wsgi:app",
        ],
        cwd=project_root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=30)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", f"/reset/{token}")
        opened = connection.getresponse()
        assert (opened.status, opened.getheader("Location")) == (303, "/reset/new")  # a real link, accepted
        connection.close()
        wait_until(lambda: "GET /reset/[token]" in errors.read_text(), "the request never reached the error log")
    finally:
        server.terminate()
        server.wait(30)
    text = errors.read_text()
    assert "GET /reset/[token]" in text  # gunicorn wrote the request line, redacted
    assert token not in text
    assert token not in (tmp_path / "access.log").read_text()


def test_gunicorn_error_log_redacts_an_unhandled_request_error(tmp_path):
    from gunicorn.config import Config

    from pwdrst.accesslog import RedactingLogger

    config = Config()
    config.set("errorlog", str(tmp_path / "error.log"))
    config.set("loglevel", "debug")
    log = RedactingLogger(config)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("Error handling request %s %s", "GET", "/recovery/WyJzZWNyZXQiXQ.abc.def?x=1")
    log.debug("%s %s", "GET", "/pwdrst/reset/WyJzZWNyZXQiXQ.abc.def")
    text = (tmp_path / "error.log").read_text()
    assert "WyJzZWNyZXQiXQ" not in text
    assert "/recovery/[token]?x=1" in text and "/pwdrst/reset/[token]" in text
