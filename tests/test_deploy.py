"""The deployment kit in deploy/: the app starts exactly as the systemd unit says, and the image builds."""

import pathlib
import re
import shlex
import shutil
import subprocess
import urllib.request

import pytest

from pwdrst import sandbox


def deploy_dir(root) -> pathlib.Path:
    """Return the deployment kit's folder."""
    return pathlib.Path(root) / "deploy"


def unit_setting(unit: str, key: str) -> str:
    """Return the value of one `Key=value` line of the [Service] section."""
    [value] = re.findall(rf"^{key}=(.+)$", unit, flags=re.M)
    return value.strip()


def pwdrst_variables(settings: dict) -> dict[str, str]:
    """Return the test settings as PWDRST_* variables, without Flask's own keys (not pwdrst settings)."""
    return sandbox.as_environment({k: v for k, v in settings.items() if k not in ("TESTING", "SESSION_COOKIE_PATH")})


def env_file(text: str) -> dict[str, str]:
    """Read a systemd EnvironmentFile: KEY=value lines, comments and blanks ignored."""
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_the_unit_is_hardened(project_root):
    unit = (deploy_dir(project_root) / "pwdrst.service").read_text()
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "User=pwdrst"):
        assert f"\n{line}\n" in unit


def test_the_app_starts_as_the_units_execstart_says(project_root, server_settings, redis_server, tmp_path):
    unit = (deploy_dir(project_root) / "pwdrst.service").read_text()
    command = shlex.split(unit_setting(unit, "ExecStart").replace("/opt/pwdrst", str(project_root)))
    assert unit_setting(unit, "EnvironmentFile") == "/etc/pwdrst/pwdrst.env"
    shipped = env_file((deploy_dir(project_root) / "pwdrst.env").read_text())
    # The shipped file, with its <placeholders> and the servers filled in for this machine.
    _, redis_uri = redis_server
    port = sandbox.free_port()
    password_file = tmp_path / "ldap-password"
    settings = server_settings(PUBLIC_URL=f"http://127.0.0.1:{port}", TRUSTED_HOSTS=["127.0.0.1"])
    password_file.write_text(settings.pop("LDAP_BIND_PASSWORD"))
    filled = {
        **shipped,
        **pwdrst_variables(settings),
        "PWDRST_LDAP_BIND_PASSWORD_FILE": str(password_file),
        "PWDRST_LDAP_CA_FILE": "",
        "PWDRST_RATELIMIT_STORAGE_URI": redis_uri,
        "PWDRST_SESSION_STORAGE_URI": redis_uri,
        "PWDRST_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "PWDRST_GUNICORN_BIND": f"127.0.0.1:{port}",
    }
    assert set(shipped) <= set(filled)
    assert not [v for v in filled.values() if v.startswith("<")], "a placeholder was left unfilled"
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **{k: v for k, v in filled.items() if v != ""}}
    server = subprocess.Popen(command, cwd=project_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        sandbox.wait_for_port(port, timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            assert answer.status == 200 and b'"ok"' in answer.read()
    finally:
        server.terminate()
        output = server.communicate(timeout=40)[0].decode()
    assert "Booting worker" in output


def test_the_container_image_builds_and_checks_its_config(project_root):
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode:
        pytest.skip("no container engine answers on this machine (docker info fails)")
    tag = "pwdrst-test:latest"
    build = subprocess.run(
        [docker, "build", "-f", "deploy/Dockerfile", "-t", tag, "."], cwd=project_root, capture_output=True, timeout=900
    )
    assert build.returncode == 0, build.stderr.decode()[-2000:]
    check = subprocess.run(
        [docker, "run", "--rm", "--network", "none", tag, "flask", "--app", "pwdrst", "check-config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # No settings given: check-config must answer with a sentence naming what is missing, not a traceback.
    assert check.returncode != 0 and "is not set" in check.stderr + check.stdout
    assert "Traceback" not in check.stderr


# -- the reminder job's timer

HARDENING = re.compile(
    r"^(NoNewPrivileges|Protect\w+|Private\w+|Restrict\w+|LockPersonality|MemoryDenyWriteExecute"
    r"|CapabilityBoundingSet|AmbientCapabilities|SystemCall\w+|UMask|User|Group|EnvironmentFile"
    r"|WorkingDirectory|StateDirectory)=.*$",
    re.M,
)


def test_the_timer_runs_the_reminder_service_daily_and_catches_up(project_root):
    timer = (deploy_dir(project_root) / "pwdrst-notify-expiring.timer").read_text()
    assert unit_setting(timer, "Unit") == "pwdrst-notify-expiring.service"
    assert unit_setting(timer, "Persistent") == "true"
    assert unit_setting(timer, "RandomizedDelaySec")
    assert re.fullmatch(r"(daily|\*-\*-\* \d\d:\d\d(:\d\d)?)", unit_setting(timer, "OnCalendar"))
    assert "WantedBy=timers.target" in timer


def test_the_reminder_service_runs_the_apps_flask_with_the_same_settings_and_hardening(project_root):
    app_unit = (deploy_dir(project_root) / "pwdrst.service").read_text()
    job_unit = (deploy_dir(project_root) / "pwdrst-notify-expiring.service").read_text()
    check = shlex.split(unit_setting(app_unit, "ExecStartPre"))
    job = shlex.split(unit_setting(job_unit, "ExecStart"))
    assert job[:3] == check[:3] == ["/opt/pwdrst/.venv/bin/flask", "--app", "pwdrst"]
    assert job[3] == "notify-expiring"
    assert unit_setting(job_unit, "Type") == "oneshot"
    assert sorted(m.group(0) for m in HARDENING.finditer(job_unit)) == sorted(
        m.group(0) for m in HARDENING.finditer(app_unit)
    )


def test_the_reminder_service_runs_with_dry_run_against_the_test_servers(project_root, server_settings, tmp_path):
    unit = (deploy_dir(project_root) / "pwdrst-notify-expiring.service").read_text()
    command = shlex.split(unit_setting(unit, "ExecStart").replace("/opt/pwdrst", str(project_root)))
    shipped = env_file((deploy_dir(project_root) / "pwdrst.env").read_text())
    settings = server_settings()
    filled = {
        **shipped,
        **pwdrst_variables(settings),
        "PWDRST_LDAP_CA_FILE": "",
        "PWDRST_RATELIMIT_STORAGE_URI": "memory://",
        "PWDRST_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "PWDRST_REMINDER_STATE_DIR": str(tmp_path),
    }
    assert not [v for v in filled.values() if v.startswith("<")], "a placeholder was left unfilled"
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **{k: v for k, v in filled.items() if v != ""}}
    env.pop("PWDRST_LDAP_BIND_PASSWORD_FILE")
    run = subprocess.run(
        [*command, "--dry-run"], cwd=project_root, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines()[0] == "login,days_left,outcome"
    assert "notify-expiring:" in run.stderr
