"""The after-change hook: a command run after every successful password change or reset.

Servers that cache passwords (Dovecot's authentication cache, an SSO server's) keep taking the old
password until their entry expires. POST_CHANGE_COMMAND lets an operator flush it: the command runs
with the account's login as its only added argument, never the password (not in the arguments, not
in the environment, not on standard input), off the request path in a worker thread, within
POST_CHANGE_TIMEOUT seconds. Its outcome is audited; a failure is logged and never turns a
successful change into an error.
"""

import logging
import shlex
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

from flask import current_app

from pwdrst import audit

logger = logging.getLogger(__name__)

# The only environment the command sees: enough to find programs and speak UTF-8.
ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class PostChangeHook:
    """Runs POST_CHANGE_COMMAND for each changed account, a few at a time, off the request path."""

    def __init__(self, command, timeout: float):
        self.command = shlex.split(command) if isinstance(command, str) else list(command or [])
        self.timeout = float(timeout)
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pwdrst-hook")
        self._pending: set = set()
        self._lock = threading.Lock()

    def run(self, login: str) -> None:
        """Start the command for login and return at once (nothing happens when none is set)."""
        if not self.command:
            return
        future = self._executor.submit(self._run, login)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future) -> None:
        with self._lock:
            self._pending.discard(future)

    def _run(self, login: str) -> None:
        argv = [*self.command, login]
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
                env=ENVIRONMENT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            logger.warning("post-change command for %s did not finish within %gs", login, self.timeout)
            audit.log("post_change_hook", "timeout", account=login, actor="pwdrst")
            return
        except OSError as exc:
            logger.warning("post-change command for %s could not start: %s", login, exc)
            audit.log("post_change_hook", "failed", account=login, actor="pwdrst", reason="cannot_start")
            return
        if result.returncode:
            output = (result.stderr or result.stdout).decode("utf-8", "replace").strip()[-500:]
            logger.warning("post-change command for %s exited with %d: %s", login, result.returncode, output)
            audit.log("post_change_hook", "failed", account=login, actor="pwdrst", exit_code=result.returncode)
            return
        audit.log("post_change_hook", "ok", account=login, actor="pwdrst")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every started command has finished; return whether all did in time."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            try:
                future.result(timeout)
            except Exception:  # noqa: BLE001, S112 - _run catches its own failures; a wait that times out says so below
                continue
        with self._lock:
            return not self._pending


def init_app(app) -> None:
    """Create the app's after-change hook."""
    app.extensions["pwdrst.hook"] = PostChangeHook(app.config["POST_CHANGE_COMMAND"], app.config["POST_CHANGE_TIMEOUT"])


def after_change(login: str) -> None:
    """Run the after-change hook for login, if one is set."""
    current_app.extensions["pwdrst.hook"].run(login)
