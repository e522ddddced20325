"""Gunicorn's access log never holds a link token."""

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
