"""Benchmark pwdrst against the real directory; every figure beside the raw directory change.

    .venv/bin/python benchmarks/run.py [--people 10000] [--rounds 3] [--workers 2] [--threads 8]
                                       [--concurrency 8] [--json FILE]

Starts a private slapd with N people, an SMTP server on loopback (in its own process, with a delay
before it accepts each message) and the app under gunicorn (gunicorn.conf.py). Then, in interleaved
rounds, measures the reference (ldap3 binding as a person and sending Password Modify, in 2 client
processes each reusing one connection) and, through the app with a closed-loop client of its own:
password changes, reset requests (SMTP delay 0 and 2 s), link use, and a page. It also times the
policy's worst case and reads each worker's resident memory. Each figure is printed beside its
ratio to the reference of the same rounds, and written as JSON. No test asserts any of it.
"""

import argparse
import json
import multiprocessing
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import loadgen  # noqa: E402

from pwdrst import sandbox  # noqa: E402

WORDS = "zielony parasol rzeka wiatrak kubek herbata okno sowa gwiazda most lampa morze tatry".split()


def new_password(n: int, generation: int) -> str:
    """A password the policy accepts, different for every person and generation."""
    a, b, c = WORDS[n % 13], WORDS[(n // 13) % 13], WORDS[(n // 169 + generation) % 13]
    return f"{a.capitalize()}-{b}-{c}-{generation}-{n:05d}"


def make_people(count: int):
    return [
        sandbox.Person(
            f"b{n:05d}",
            "Bench",
            f"Person{n:05d}",
            new_password(n, 0),
            (f"bench.person{n:05d}@uni.example", f"b{n:05d}@uni.example"),
            (f"bench.person{n:05d}@private.example",),
        )
        for n in range(count)
    ]


# -- the SMTP server, in its own process so that it takes no CPU from the load generator's GIL


SINK = """
import sys, time
sys.path.insert(0, {root!r})
from pwdrst.sandbox import SmtpSink
sink = SmtpSink(port={port}, delay={delay}, keep=False).start()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "count":
        print(sink.count, flush=True)
sink.stop()
"""


class Sink:
    """An SMTP sink process that answers how many messages it has."""

    def __init__(self, port: int, delay: float):
        self.process = subprocess.Popen(
            [sys.executable, "-c", SINK.format(root=ROOT, port=port, delay=delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "ready"

    def count(self) -> int:
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def wait_for(self, expected: int, timeout: float) -> tuple[int, float]:
        """Wait until expected messages arrived; return (count, seconds waited)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.count() >= expected:
                break
            time.sleep(0.2)
        return self.count(), time.monotonic() - started

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


# -- the reference: the raw directory change


def _reference_worker(url, jobs, queue):
    import ldap3

    conn = ldap3.Connection(ldap3.Server(url, get_info=ldap3.NONE), authentication=ldap3.SIMPLE, raise_exceptions=False)
    conn.open(read_server_info=False)
    done = 0
    started = time.perf_counter()
    for dn, old, new in jobs:
        conn.user, conn.password = dn, old.encode()
        if conn.bind(read_server_info=False):
            conn.extend.standard.modify_password(None, old.encode(), new.encode())
            done += conn.result["result"] == 0
    queue.put((done, time.perf_counter() - started))
    conn.unbind()


def reference(url: str, jobs) -> float:
    """Changes per second of the raw directory change, in 2 client processes."""
    queue = multiprocessing.Queue()
    halves = [jobs[0::2], jobs[1::2]]
    processes = [multiprocessing.Process(target=_reference_worker, args=(url, half, queue)) for half in halves]
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    done = sum(r[0] for r in results)
    if done < len(jobs):
        raise RuntimeError(f"the reference changed {done} of {len(jobs)} passwords")
    return done / max(r[1] for r in results)


# -- the app under gunicorn


def start_app(slapd, smtp_port, port, workers, threads, audit_log):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PWDRST_")}
    lots = "100000000 per minute"  # one client address sends everything: per-address limits would bite
    settings = {
        **sandbox.app_settings(slapd.url, smtp_port, f"http://127.0.0.1:{port}"),
        "SECRET_KEY": secrets.token_urlsafe(32),
        "MAIL_WORKERS": 16,  # I/O-bound: with a 2 s SMTP server, threads are what carries mail
        "MAIL_RETRY_DELAYS": [0.5, 1, 2, 4, 8],
        "POLICY_ORGANISATION_WORDS": ["Uniwersytet", "Przykładowy", "uni", "example"],
        "AUDIT_LOG": audit_log,
        "RATELIMIT_RESET_REQUEST": lots,
        "RATELIMIT_LINK_USE": lots,
        "RATELIMIT_LOGIN_ADDRESS": lots,
    }
    env.update(sandbox.as_environment(settings))
    env.update(
        {
            "PWDRST_GUNICORN_BIND": f"127.0.0.1:{port}",
            "PWDRST_GUNICORN_WORKERS": str(workers),
            "PWDRST_GUNICORN_THREADS": str(threads),
            "PWDRST_GUNICORN_ACCESS_LOG": "",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    sandbox.wait_for_port(port, timeout=60)
    return process, env


def worker_rss(master_pid: int) -> list[int]:
    """Resident memory (KiB) of each gunicorn worker."""
    sizes = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            if ppid != master_pid:
                continue
            with open(f"/proc/{pid}/status") as fh:
                sizes += [int(line.split()[1]) for line in fh if line.startswith("VmRSS:")]
        except (OSError, ValueError, IndexError):
            continue
    return sizes


# -- the scenarios through the app


def browsers(port, count):
    return [loadgen.Browser("127.0.0.1", port) for _ in range(count)]


def split(items, parts):
    return [items[i::parts] for i in range(parts)]


def scenario_change(port, people, concurrency, generation):
    """Log everyone in first (not timed); then one POST /password each, checked by its answer."""
    tabs = []
    for person in people:
        tab = loadgen.Browser("127.0.0.1", port)
        token = tab.csrf("/login")
        status, headers, _ = tab.request(
            "POST", "/login", {"csrf_token": token, "identifier": person.uid, "password": person.password}
        )
        if status != 303:
            raise RuntimeError(f"login failed for {person.uid}: {status}")
        tab.token = tab.csrf("/password")
        tab.person = person
        tabs.append(tab)

    def change(tab):
        new = new_password(int(tab.person.uid[1:]), generation)
        form = {"csrf_token": tab.token, "current_password": tab.person.password, "new_password": new, "confirm": new}
        status, headers, _ = tab.request("POST", "/password", form)
        return status == 303 and headers.get("Location", "").endswith("/password/changed")

    # One connection per simulated person would be 400 sockets; a closed loop of `concurrency`
    # connections each carries its people's requests in turn, with each person's own cookie.
    groups = split(tabs, concurrency)
    drivers = [ConnectionPool(group) for group in groups]
    result = loadgen.run(drivers, [[(lambda d, t=t: change(d.as_(t))) for t in group] for group in groups])
    checked = sum(1 for tab in tabs if tab.request("GET", "/password/changed")[0] == 200)
    for tab in tabs:
        tab.close()
    return result, checked


class ConnectionPool:
    """One keep-alive connection lending itself to several people's cookie jars in turn."""

    def __init__(self, tabs):
        self.conn_owner = tabs[0] if tabs else None

    def as_(self, tab):
        if self.conn_owner is not tab:
            tab.conn, self.conn_owner.conn = self.conn_owner.conn, tab.conn
            self.conn_owner = tab
        return tab


def closed_loop(port, concurrency, items, action, prepare=None):
    """Share items over `concurrency` keep-alive connections; run action(tab, item) for each, timed."""
    tabs = browsers(port, concurrency)
    for tab in tabs:
        if prepare:
            prepare(tab)
    tasks = [[(lambda t, i=i: action(t, i)) for i in group] for group in split(items, concurrency)]
    try:
        return loadgen.run(tabs, tasks)
    finally:
        for tab in tabs:
            tab.close()


def scenario_reset(port, people, concurrency):
    def prepare(tab):
        tab.token = tab.csrf("/reset")

    def request(tab, person):
        status, _, _ = tab.request("POST", "/reset", {"csrf_token": tab.token, "identifier": person.mail[0]})
        return status == 303

    return closed_loop(port, concurrency, people, request, prepare)


def scenario_links(port, links, concurrency, generation):
    def use(tab, item):
        person, link = item
        tab.cookies.clear()
        status, _, _ = tab.request("GET", link.split(f"{port}", 1)[1])
        if status != 303:
            return False
        token = tab.csrf("/reset/new")
        new = new_password(int(person.uid[1:]), generation)
        status, _, _ = tab.request("POST", "/reset/new", {"csrf_token": token, "new_password": new, "confirm": new})
        return status == 303

    return closed_loop(port, concurrency, links, use)


def scenario_page(port, count, concurrency):
    return closed_loop(port, concurrency, range(count), lambda tab, _: tab.request("GET", "/reset")[0] == 200)


def issue_links(env, people, max_age=3600):
    """Issue links with the app's own code (same key, same fingerprints), as the helpdesk would."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(
        {k: v for k, v in env.items() if k.startswith("PWDRST_") and not k.startswith("PWDRST_GUNICORN_")}
    )
    try:
        from pwdrst import create_app
        from pwdrst.links import reset_link

        app = create_app()
        with app.app_context():
            directory = app.extensions["pwdrst.directory"]
            links = [(p, reset_link(directory.get_account(p.uid), "helpdesk", max_age)) for p in people]
            directory.close()
        return links
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- the run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark pwdrst against the raw directory change.")
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument("--concurrency", type=int, default=8, help="connections of the load generator")
    parser.add_argument("--batch", type=int, default=400, help="requests per scenario and round")
    parser.add_argument("--smtp-delay", type=float, default=2.0, help="the slow SMTP server's delay")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "latest.json"))
    args = parser.parse_args(argv)

    batch, rounds = args.batch, args.rounds
    needed = rounds * (batch * 2 + 1200) + batch
    if args.people < needed:
        parser.error(f"--people must be at least {needed} for {rounds} rounds of {batch}")
    started_at = time.monotonic()
    people = make_people(args.people)
    pools = {
        "reference": people[: rounds * 1200],
        "change": people[rounds * 1200 : rounds * 1200 + rounds * batch],
        "links": people[rounds * 1200 + rounds * batch : rounds * 1200 + 2 * rounds * batch],
        "reset": people[rounds * 1200 + 2 * rounds * batch :],
    }
    print(f"starting slapd with {args.people} people...", flush=True)
    slapd = sandbox.Slapd(people)
    slapd.start()
    smtp_port = sandbox.free_port()
    sink = Sink(smtp_port, 0.0)
    port = sandbox.free_port()
    audit_log = tempfile.NamedTemporaryFile(prefix="pwdrst-bench-audit-", suffix=".jsonl", delete=False).name
    app, env = start_app(slapd, smtp_port, port, args.workers, args.threads, audit_log)
    print(
        f"gunicorn: {args.workers} workers x {args.threads} threads; load: {args.concurrency} connections", flush=True
    )
    figures = {k: [] for k in ("reference", "change", "reset_fast", "reset_slow", "links", "page")}
    mails_expected = mails_missing = 0
    try:
        for r in range(rounds):
            # Fresh people each round: their password is still the first one.
            jobs = [
                (p.dn, p.password, new_password(int(p.uid[1:]), 1))
                for p in pools["reference"][r * 1200 : (r + 1) * 1200]
            ]
            figures["reference"].append({"rate": reference(slapd.url, jobs)})

            group = pools["change"][r * batch : (r + 1) * batch]
            result, checked = scenario_change(port, group, args.concurrency, generation=1)
            figures["change"].append(summary(result, checked=checked))

            before = sink.count()
            result = scenario_reset(port, pools["reset"][(r * batch) % len(pools["reset"]) :][:batch], args.concurrency)
            arrived, waited = sink.wait_for(before + len(result.latencies), timeout=60)
            mails_expected += len(result.latencies)
            mails_missing += max(0, before + len(result.latencies) - arrived)
            figures["reset_fast"].append(summary(result, mails=arrived - before))

            group = pools["links"][r * batch : (r + 1) * batch]
            links = issue_links(env, group)
            figures["links"].append(summary(scenario_links(port, links, args.concurrency, generation=1)))

            figures["page"].append(summary(scenario_page(port, batch * 2, args.concurrency)))
            print(f"round {r + 1} of {rounds} done ({time.monotonic() - started_at:.0f} s)", flush=True)

        # The slow SMTP server: one round (its mails take a while to drain), after the others.
        sink.stop()
        sink = Sink(smtp_port, args.smtp_delay)
        slow = pools["reset"][-batch:]
        result = scenario_reset(port, slow, args.concurrency)
        arrived, waited = sink.wait_for(len(result.latencies), timeout=300)
        mails_expected += len(result.latencies)
        mails_missing += max(0, len(result.latencies) - arrived)
        figures["reset_slow"].append(summary(result, mails=arrived, drained_in=waited))
        # The people of the first round once more, from their second password to a third.
        jobs = [
            (p.dn, new_password(int(p.uid[1:]), 1), new_password(int(p.uid[1:]), 2)) for p in pools["reference"][:1200]
        ]
        figures["reference"].append({"rate": reference(slapd.url, jobs)})
        rss = worker_rss(app.pid)
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        app.wait(60)
        sink.stop()
        slapd.close()
        os.unlink(audit_log)

    from policy import JAN, Policy, time_checks  # benchmarks/policy.py

    bounded = Policy(organisation_words=["Uniwersytet"])
    bounded.check("warm-up-the-dictionaries", JAN)
    policy_worst = max(max(row.values()) for row in time_checks(bounded, 3, random.Random(1)).values())
    report = build_report(figures, rss, policy_worst, mails_expected, mails_missing, args)
    print_report(report)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    print(f"\nJSON: {args.json}   total time: {time.monotonic() - started_at:.0f} s")
    return 0


def summary(result, **extra) -> dict:
    return {
        "rate": result.rate,
        "p50_ms": result.percentile(50) * 1000,
        "p99_ms": result.percentile(99) * 1000,
        "count": len(result.latencies),
        "failures": result.failures,
        **extra,
    }


def build_report(figures, rss, policy_worst, mails_expected, mails_missing, args) -> dict:
    reference_rate = statistics.median(f["rate"] for f in figures["reference"])
    rows = {}
    for name, runs in figures.items():
        if name == "reference" or not runs:
            continue
        rows[name] = {
            "rate": statistics.median(r["rate"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "failures": sum(r["failures"] for r in runs),
            "per_round_p50_ms": [round(r["p50_ms"], 2) for r in runs],
        }
        rows[name]["ratio"] = rows[name]["rate"] / reference_rate
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": vars(args),
        "reference_changes_per_s": reference_rate,
        "reference_per_round": [round(f["rate"], 1) for f in figures["reference"]],
        "rows": rows,
        "worker_rss_mib": [round(k / 1024, 1) for k in rss],
        "policy_worst_ms": policy_worst,
        "mails_expected": mails_expected,
        "mails_missing": mails_missing,
    }


def print_report(report) -> None:
    names = {
        "change": "change password (POST /password)",
        "reset_fast": "reset request, SMTP instant",
        "reset_slow": "reset request, SMTP 2 s",
        "links": "link use (open + set password)",
        "page": "page (GET /reset)",
    }
    reference_rate = report["reference_changes_per_s"]
    print()
    print(f"{'figure':<36}{'per s':>9}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}")
    print(f"{'reference: ldap3 bind + Password Modify':<36}{reference_rate:>9.1f}{1.0:>8.2f}")
    for key, label in names.items():
        row = report["rows"].get(key)
        if row:
            print(
                f"{label:<36}{row['rate']:>9.1f}{row['ratio']:>8.2f}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
                f"{row['failures']:>8}"
            )
    print(f"\nreference per round (changes/s): {report['reference_per_round']}")
    for key in ("reset_fast", "links"):
        if key in report["rows"]:
            print(f"{names[key]}: p50 per round (ms) {report['rows'][key]['per_round_p50_ms']}")
    print(f"policy check, worst case: {report['policy_worst_ms']:.1f} ms")
    print(f"mails: {report['mails_expected'] - report['mails_missing']} of {report['mails_expected']} arrived")
    print(f"worker resident memory (MiB): {report['worker_rss_mib']}")


if __name__ == "__main__":
    sys.exit(main())
