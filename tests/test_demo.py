"""The demo command: it brings up the home page and a directory a sample person can bind to."""

import re
import signal
import subprocess
import sys
import time
import urllib.request

import ldap3

from pwdrst import sandbox
from pwdrst.sandbox import free_port, wait_for_port


def test_demo_starts_everything_and_stops_cleanly(project_root):
    port, ldap_port, smtp_port = free_port(), free_port(), free_port()
    env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "pwdrst.demo", "--port", str(port), "--ldap-port", str(ldap_port)]
        + ["--smtp-port", str(smtp_port)],
        cwd=project_root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        banner = "".join(output)
        assert f"http://127.0.0.1:{port}/" in banner
        ldap_url = re.search(r"directory:\s+(ldap://\S+)", banner).group(1)
        wait_for_port(port)
        home = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert "Uniwersytet Przykładowy" in home and "Zapomniałem hasła" in home
        assert ldap_url == f"ldap://127.0.0.1:{ldap_port}" and f"SMTP on 127.0.0.1:{smtp_port}" in banner
        for path in ("/reset", "/login", "/helpdesk/"):
            assert f"http://127.0.0.1:{port}{path}" in banner
        for person in sandbox.SAMPLE_PEOPLE:
            assert person.uid in banner and person.password in banner
            assert all(address in banner for address in person.mail)
        assert re.search(r"mzielinska\s+helpdesk\s", banner) and re.search(r"kwojcik\s+admin, protected\s", banner)
        assert re.search(r"jkowalski\s+person\s", banner)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10).read()
        jan = sandbox.SAMPLE_PEOPLE[0]
        conn = ldap3.Connection(ldap3.Server(ldap_url), jan.dn, jan.password.encode())
        assert conn.bind()
        conn.unbind()
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=30)
    assert demo.returncode == 0
    assert "stopping the demo" in rest
    assert (
        f"stopped: the app on 127.0.0.1:{port}" in rest and f"stopped: the SMTP server on 127.0.0.1:{smtp_port}" in rest
    )
    assert f"stopped: slapd on ldap://127.0.0.1:{ldap_port}" in rest
    assert "GET /login" in rest and "\x1b[" not in banner + rest  # the request log, without colour codes
    left = subprocess.run(["pgrep", "-f", ldap_url.rsplit(":", 1)[1]], capture_output=True, text=True).stdout
    assert left.strip() == ""  # slapd stopped with the demo
