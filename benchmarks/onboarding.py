"""Onboarding a year of students: `flask --app pwdrst bulk-issue` beside the raw work it stands on.

Used by run.py (`--only onboarding`). The command runs as a real subprocess with the benchmark's
settings; a thread samples its resident memory and CPU from /proc and counts the rows it has done
(its audit lines) and the mail the SMTP sink has taken. The reference is the raw work under it:
the same people found by raw indexed ldap3 searches on one reused connection, and as many mails of
the same size sent by a raw smtplib client over one connection to the same SMTP sink.
"""

import csv
import os
import smtplib
import subprocess
import sys
import threading
import time

import ldap3

from pwdrst import sandbox

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")

# What the app asks for when it looks a person up (Directory._account_attributes, OpenLDAP flavour).
ACCOUNT_ATTRIBUTES = [
    "cn",
    "displayName",
    "givenName",
    "mail",
    "pwdAccountLockedTime",
    "pwdChangedTime",
    "pwdGraceUseTime",
    "pwdPolicySubentry",
    "pwdReset",
    sandbox.RECOVERY_ATTRIBUTE,
    "sn",
    "uid",
    "userPassword",
]


def write_rows(path: str, people) -> None:
    """Write bulk-issue's input: a header, then each person's university address."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["identifier"])
        writer.writerows([p.mail[0]] for p in people)


def raw_searches(url: str, people) -> dict:
    """Find each person as the app does (its filter and attributes), on one connection bound as the service."""
    conn = ldap3.Connection(
        ldap3.Server(url, get_info=ldap3.NONE),
        user=sandbox.SERVICE_DN,
        password=sandbox.SERVICE_PASSWORD,
        authentication=ldap3.SIMPLE,
        raise_exceptions=False,
    )
    conn.open(read_server_info=False)
    conn.bind(read_server_info=False)
    found = 0
    cpu, started = time.process_time(), time.perf_counter()
    for person in people:
        value = ldap3.utils.conv.escape_filter_chars(person.mail[0])
        conn.search(
            sandbox.BASE_DN,
            f"(&(objectClass=inetOrgPerson)(|(uid={value})(mail={value})))",
            ldap3.SUBTREE,
            attributes=ACCOUNT_ATTRIBUTES,
            size_limit=3,
        )
        found += sum(1 for e in conn.response if e.get("type") == "searchResEntry")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    conn.unbind()
    if found != len(people):
        raise RuntimeError(f"the raw searches found {found} of {len(people)} people")
    return {"count": len(people), "seconds": elapsed, "client_cpu_ms": cpu * 1000}


def raw_mails(port: int, sender: str, recipients_of, message: bytes, count: int) -> dict:
    """Send count copies of one rendered mail over one SMTP connection; return the time it took."""
    cpu, started = time.process_time(), time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for n in range(count):
            smtp.sendmail(sender, recipients_of(n), message)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"count": count, "seconds": elapsed, "client_cpu_ms": cpu * 1000, "message_bytes": len(message)}


def _status(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                values[key] = int(rest.split()[0])
    return values


def _pss_kib(pid: int) -> int:
    """Proportional set size: pages shared after a fork count once over the processes that share them."""
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        return next((int(line.split()[1]) for line in fh if line.startswith("Pss:")), 0)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(child) for child in fh.read().split()]
    except OSError:
        return []


def _cpu_ms(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_MS


class Sampler(threading.Thread):
    """Sample a process's memory and CPU, the rows it has done and the mail delivered, every interval."""

    def __init__(self, pid: int, audit_log: str, mail_count, interval: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.audit_log, self.mail_count, self.interval = pid, audit_log, mail_count, interval
        self.samples: list[dict] = []
        self.first_row_at: float | None = None
        self._done = threading.Event()
        self._lines = 0
        self._offset = 0
        self.started = time.perf_counter()

    def _rows(self) -> int:
        try:
            with open(self.audit_log, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return self._lines
        # Count whole lines only; a line being written is counted next time.
        end = chunk.rfind(b"\n") + 1
        self._lines += chunk.count(b"\n", 0, end)
        self._offset += end
        return self._lines

    def run(self) -> None:
        while not self._done.is_set():
            try:
                status, cpu, pss = _status(self.pid), _cpu_ms(self.pid), _pss_kib(self.pid)
            except (OSError, ValueError, IndexError):
                break  # the process has ended
            # Its worker processes (bulk-issue --jobs), if any: their memory and CPU count too.
            workers = _children(self.pid)
            for child in workers:
                try:
                    pss += _pss_kib(child)
                    cpu += _cpu_ms(child)
                except (OSError, ValueError, IndexError):
                    continue
            rows = self._rows()
            now = time.perf_counter() - self.started
            if rows and self.first_row_at is None:
                self.first_row_at = now
            self.samples.append(
                {
                    "t": round(now, 2),
                    "pss_kib": pss,
                    "rss_kib": status.get("VmRSS", 0),
                    "processes": 1 + len(workers),
                    "threads": status.get("Threads", 0),
                    "cpu_ms": round(cpu, 1),
                    "rows": rows,
                    "mails": self.mail_count(),
                }
            )
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join(10)


def run_bulk_issue(env, rows_csv, report_csv, audit_log, mail_count, cwd, profile=None) -> dict:
    """Run bulk-issue as its own process; return its exit code, wall time, rusage and the samples.

    With profile (a file name), py-spy samples the CPU of the command's every thread 100 times
    a second (without pausing it) and writes collapsed stacks there; it slows the command down.
    """
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    command = [flask] if os.path.exists(flask) else [sys.executable, "-m", "flask"]
    command += ["--app", "pwdrst", "bulk-issue", rows_csv, "--report", report_csv]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    sampler = Sampler(process.pid, audit_log, mail_count)
    sampler.start()
    spy = None
    if profile:
        py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        spy = subprocess.Popen(
            [py_spy, "record", "--pid", str(process.pid), "--rate", "100", "--nonblocking", "--threads"]
            + ["--format", "raw", "--output", profile],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    stderr = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)
    reader.start()
    # wait4, not Popen.wait: its rusage is this child's CPU and peak memory alone.
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop()
    reader.join(10)
    if spy is not None:
        spy.wait(60)
    return {
        "exit_code": process.returncode,
        "seconds": elapsed,
        "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1000,
        "user_ms": usage.ru_utime * 1000,
        "system_ms": usage.ru_stime * 1000,
        "first_row_s": sampler.first_row_at,
        "samples": sampler.samples,
        "stderr_tail": [line.decode("utf-8", "replace").rstrip() for line in stderr[-5:]],
    }


def memory_at(samples: list[dict], rows: int) -> dict:
    """Return the memory (MiB, PSS of the command and its workers) as 10 %, 50 % and 100 % of the rows were done.

    Each is the last sample before that many rows were done (for 100 %: just before the last row),
    so the processes' exit never counts; peak is the largest sample.
    """
    marks = {}
    for share in (10, 50, 100):
        target = rows * share / 100
        before = [s for s in samples if 0 < s["rows"] < target] or [s for s in samples if s["rows"] <= target]
        marks[f"{share}%"] = round(before[-1]["pss_kib"] / 1024, 1) if before else None
    marks["peak"] = round(max((s["pss_kib"] for s in samples), default=0) / 1024, 1)
    marks["processes"] = max((s["processes"] for s in samples), default=0)
    return marks


def outcomes(report_csv: str) -> dict[str, int]:
    """Count the report's rows by outcome."""
    counts: dict[str, int] = {}
    with open(report_csv, encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    return counts
