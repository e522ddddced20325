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
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "pwdrst.demo", "--port", str(port)],
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
        jan = sandbox.SAMPLE_PEOPLE[0]
        assert jan.uid in banner and jan.password in banner
        conn = ldap3.Connection(ldap3.Server(ldap_url), jan.dn, jan.password.encode())
        assert conn.bind()
        conn.unbind()
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(30)
        demo.stdout.close()
    assert demo.returncode == 0
    left = subprocess.run(["pgrep", "-f", ldap_url.rsplit(":", 1)[1]], capture_output=True, text=True).stdout
    assert left.strip() == ""  # slapd stopped with the demo
