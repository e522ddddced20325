"""A small closed-loop HTTP load generator: keep-alive connections, one cookie jar each, N at a time.

Each worker thread owns one `Browser` (one keep-alive connection and its session cookie) and runs
its list of tasks back to back; a task is a callable taking the browser and returning True when
the answer was the expected one. Latency is measured per task; a task returning None did nothing and is not counted.
"""

import http.client
import json as jsonlib
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


class Browser:
    """One keep-alive HTTP connection with a cookie jar, as a browser tab would have."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None, json=None):
        """Send a request; return (status, headers, body text). Reconnects once if the server closed."""
        body = urlencode(form).encode() if form is not None else None
        all_headers = {"Host": f"{self.host}:{self.port}", **(headers or {})}
        if body is not None:
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if json is not None:
            body = jsonlib.dumps(json).encode()
            all_headers["Content-Type"] = "application/json"
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=all_headers)
                response = self.conn.getresponse()
                text = response.read().decode("utf-8", "replace")
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                if attempt:
                    raise
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                cookie = value.split(";", 1)[0]
                key, _, val = cookie.partition("=")
                self.cookies[key.strip()] = val.strip()
        return response.status, dict(response.getheaders()), text

    def csrf(self, path: str) -> str:
        """GET a form and return its CSRF token."""
        status, _, text = self.request("GET", path)
        match = CSRF.search(text)
        if status != 200 or not match:
            raise RuntimeError(f"no form at {path} (status {status})")
        return match.group(1)

    def close(self) -> None:
        self.conn.close()


@dataclass
class Result:
    """Latencies (seconds) and failures of one closed-loop run."""

    latencies: list = field(default_factory=list)
    failures: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run(browsers, tasks_per_browser, duration: float | None = None) -> Result:
    """Run each browser's tasks in its own thread, all at once; time the window from first to last.

    With a duration, each thread stops taking tasks once that many seconds have passed (tasks may
    then be endless iterators).
    """
    result = Result()
    lock = threading.Lock()
    start_gate = threading.Barrier(len(browsers) + 1)
    deadline = [float("inf")]

    def work(browser, tasks):
        start_gate.wait()
        for task in tasks:
            if time.perf_counter() >= deadline[0]:
                break
            started = time.perf_counter()
            try:
                ok = task(browser)
            except (OSError, http.client.HTTPException, RuntimeError):
                ok = False
            took = time.perf_counter() - started
            if ok is None:  # nothing was done (the task had no work left)
                continue
            with lock:
                if ok:
                    result.latencies.append(took)
                else:
                    result.failures += 1

    threads = [threading.Thread(target=work, args=pair) for pair in zip(browsers, tasks_per_browser, strict=True)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    if duration is not None:
        deadline[0] = started + duration
    start_gate.wait()
    for thread in threads:
        thread.join()
    result.elapsed = time.perf_counter() - started
    return result
