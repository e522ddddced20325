"""The README's set-up command: safe to run again, quiet, and offline once everything is installed."""

import os
import subprocess


def test_setup_run_again_installs_nothing_and_reaches_no_registry(project_root):
    # Point pip at an address where nothing answers: a run that tried to install would fail.
    offline = {**os.environ, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "1"}
    result = subprocess.run(
        ["bash", "scripts/setup.sh"], cwd=project_root, env=offline, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""  # nothing installed, no pip banner, no warnings
