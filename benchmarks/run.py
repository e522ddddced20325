"""Benchmark pwdrst against the real directory; every figure beside the raw directory change.

    .venv/bin/python benchmarks/run.py [--people 4000] [--rounds 3] [--seconds 5] [--workers N]
                                       [--threads N] [--concurrency 8] [--json FILE]

Starts a private slapd with N people, a redis-server for the rate limits and the sessions, an SMTP
server on loopback (in its own process, with a delay before it accepts each message) and the app
under gunicorn as the README's production recipe runs it (gunicorn.conf.py's workers and threads,
the default mail threads, limits and sessions in Redis). Then, in interleaved rounds of at least
--seconds each, measures the reference (ldap3 binding as a person and sending Password Modify, in
2 client processes each reusing one connection) and, through the app with a closed-loop client of
its own: password changes, reset requests (SMTP delay 0 and 2 s), link use, and a page. Beside each
figure's ratio to the reference of the same rounds it gives the CPU milliseconds per request of the
app, slapd, the SMTP server, Redis and the load generator (utime + stime from /proc, over each
round's window and the mail it caused), so a reader sees where the cores went. It also times the
policy's worst case and reads each worker's resident memory. No test asserts any of it.

Two scenarios run once, after the rounds, and only when --only names them (each takes minutes):
flat (reset-request CPU before and after 20,000 requests from new client addresses, with the
limiter's keys counted) and onboarding (bulk-issue of 10,000 rows beside raw searches and raw SMTP;
benchmarks/onboarding.py). The README's Performance section says what each measures.
"""

import argparse
import contextlib
import itertools
import json
import multiprocessing
import os
import random
import secrets
import shutil
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
import onboarding  # noqa: E402

from pwdrst import sandbox  # noqa: E402

# The scenarios of every round, and those run once after the rounds when --only names them.
ROUNDS = ["change", "reset", "links", "page", "slow"]
EXTRA = ["flat", "onboarding"]

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
        self.port = port
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


# -- CPU per process tree, from /proc

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                tree.setdefault(int(_stat(int(name))[1]), []).append(int(name))
            except (OSError, IndexError):
                continue
    return tree


def tree_cpu_ms(pid: int, tree: dict[int, list[int]]) -> float:
    """CPU (user + system) of a process and its live descendants, plus the children they reaped."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    own = sum(int(v) for v in fields[11:15]) * TICK_MS  # utime, stime, cutime, cstime
    return own + sum(tree_cpu_ms(child, tree) for child in tree.get(pid, []))


class CpuMeter:
    """Snapshots of the CPU each part of the benchmark has used; the load generator is this process."""

    def __init__(self, parts: dict[str, int]):
        self.parts = parts

    def snapshot(self) -> dict[str, float]:
        tree = _children()
        values = {name: tree_cpu_ms(pid, tree) for name, pid in self.parts.items()}
        # This process alone (its threads and the reference processes it has reaped), not the servers it started.
        values["loadgen"] = sum(int(v) for v in _stat(os.getpid())[11:15]) * TICK_MS
        return values

    @staticmethod
    def per_request(before: dict, after: dict, requests: int) -> dict[str, float]:
        return {name: (after[name] - before[name]) / max(1, requests) for name in before}


# -- the reference: the raw directory change


def _reference_worker(url, people, generations, seconds, queue):
    import ldap3

    conn = ldap3.Connection(ldap3.Server(url, get_info=ldap3.NONE), authentication=ldap3.SIMPLE, raise_exceptions=False)
    conn.open(read_server_info=False)
    done = failed = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for dn, n in people:
            old, new = new_password(n, generations[n]), new_password(n, generations[n] + 1)
            conn.user, conn.password = dn, old.encode()
            ok = conn.bind(read_server_info=False)
            if ok:
                conn.extend.standard.modify_password(None, old.encode(), new.encode())
                ok = conn.result["result"] == 0
            if ok:
                generations[n] += 1
                done += 1
            else:
                failed += 1
            if time.perf_counter() - started >= seconds:
                break
    queue.put((done, failed, time.perf_counter() - started, generations))
    conn.unbind()


def reference(url: str, people, generations: dict, seconds: float, meter: CpuMeter) -> dict:
    """Changes per second of the raw directory change, in 2 client processes, for `seconds`."""
    queue = multiprocessing.Queue()
    halves = [[(p.dn, int(p.uid[1:])) for p in people[i::2]] for i in range(2)]
    processes = [
        multiprocessing.Process(target=_reference_worker, args=(url, half, generations, seconds, queue))
        for half in halves
    ]
    before = meter.snapshot()
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    after = meter.snapshot()
    done, failed = sum(r[0] for r in results), sum(r[1] for r in results)
    if failed:
        raise RuntimeError(f"the reference failed {failed} of {done + failed} changes")
    for result in results:
        generations.update({n: g for n, g in result[3].items() if g > generations[n]})
    elapsed = max(r[2] for r in results)
    return {"rate": done / elapsed, "count": done, "seconds": elapsed, "cpu_ms": meter.per_request(before, after, done)}


# -- the app under gunicorn


def start_redis(port: int):
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    sandbox.wait_for_port(port)
    return process


def start_app(slapd, smtp_port, redis_port, port, workers, threads, audit_log, mail=True, extra=None, databases=(0, 1)):
    """Start the app under gunicorn; extra: settings over the benchmark's; databases: Redis's (limits, sessions)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PWDRST_")}
    lots = "100000000 per minute"  # one client address sends everything: per-address limits would bite
    settings = {
        **sandbox.app_settings(slapd.url, smtp_port, f"http://127.0.0.1:{port}"),
        "SECRET_KEY": secrets.token_urlsafe(32),
        # As the README's production recipe: limits and sessions in Redis, shared by the workers.
        "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{redis_port}/{databases[0]}",
        "SESSION_STORAGE_URI": f"redis://127.0.0.1:{redis_port}/{databases[1]}",
        "MAIL_RETRY_DELAYS": [0.5, 1, 2, 4, 8],
        "POLICY_ORGANISATION_WORDS": ["Uniwersytet", "Przykładowy", "uni", "example"],
        "AUDIT_LOG": audit_log,
        "RATELIMIT_RESET_REQUEST": lots,
        "RATELIMIT_RESET_MAIL": lots,
        "RATELIMIT_LINK_USE": lots,
        "RATELIMIT_LOGIN_ADDRESS": lots,
        "RATELIMIT_STRENGTH": lots,
        **(extra or {}),
    }
    env.update(sandbox.as_environment(settings))
    env.update({"PWDRST_GUNICORN_BIND": f"127.0.0.1:{port}", "PWDRST_GUNICORN_ACCESS_LOG": ""})
    # gunicorn.conf.py's own numbers unless asked otherwise: the benchmark runs what ships.
    if workers:
        env["PWDRST_GUNICORN_WORKERS"] = str(workers)
    if threads:
        env["PWDRST_GUNICORN_THREADS"] = str(threads)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "wsgi:app" if mail else "benchmarks.nomail_app:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(tempfile.gettempdir(), "pwdrst-bench-gunicorn.log"), "w"),  # noqa: SIM115
        start_new_session=True,
    )
    sandbox.wait_for_port(port, timeout=60)
    return process, env


def worker_rss(master_pid: int) -> list[int]:
    """Resident memory (KiB) of each gunicorn worker."""
    sizes = []
    for pid in _children().get(master_pid, []):
        try:
            with open(f"/proc/{pid}/status") as fh:
                sizes += [int(line.split()[1]) for line in fh if line.startswith("VmRSS:")]
        except (OSError, ValueError, IndexError):
            continue
    return sizes


# -- the scenarios through the app


def split(items, parts):
    return [items[i::parts] for i in range(parts)]


def endless(items):
    while True:
        yield from items


def login(port, person, password):
    tab = loadgen.Browser("127.0.0.1", port)
    token = tab.csrf("/login")
    status, _, _ = tab.request("POST", "/login", {"csrf_token": token, "identifier": person.uid, "password": password})
    if status != 303:
        raise RuntimeError(f"login failed for {person.uid}: {status}")
    tab.token = tab.csrf("/password")
    return tab


def scenario_change(port, people, generations, seconds, meter=False):
    """Each of `people` logs in (not timed), then changes their own password again and again.

    With meter, each change first asks the strength meter about the new password, as the page's
    script does while the person types (its last call), and the figure counts both requests' CPU.
    """
    tabs = [login(port, p, new_password(int(p.uid[1:]), generations[int(p.uid[1:])])) for p in people]

    def change(tab, person):
        n = int(person.uid[1:])
        old, new = new_password(n, generations[n]), new_password(n, generations[n] + 1)
        if meter:
            status, _, _ = tab.request(
                "POST", "/api/strength", headers={"X-CSRFToken": tab.token}, json={"password": new}
            )
            if status != 200:
                return False
        form = {"csrf_token": tab.token, "current_password": old, "new_password": new, "confirm": new}
        status, headers, _ = tab.request("POST", "/password", form)
        ok = status == 303 and headers.get("Location", "").endswith("/password/changed")
        if ok:
            generations[n] += 1
        return ok

    def forever(person):
        while True:
            yield lambda tab: change(tab, person)

    tasks = [forever(p) for p in people]
    try:
        return loadgen.run(tabs, tasks, duration=seconds)
    finally:
        for tab in tabs:
            tab.close()


def closed_loop(port, concurrency, items, action, seconds, prepare=None):
    """Share items over `concurrency` keep-alive connections; run action(tab, item) for `seconds`."""
    tabs = [loadgen.Browser("127.0.0.1", port) for _ in range(concurrency)]
    for tab in tabs:
        if prepare:
            prepare(tab)
    tasks = [(lambda t, i=i: action(t, i) for i in endless(group)) for group in split(list(items), concurrency)]
    try:
        return loadgen.run(tabs, tasks, duration=seconds)
    finally:
        for tab in tabs:
            tab.close()


def scenario_reset(port, people, concurrency, seconds):
    def prepare(tab):
        tab.token = tab.csrf("/reset")

    def request(tab, person):
        status, _, _ = tab.request("POST", "/reset", {"csrf_token": tab.token, "identifier": person.mail[0]})
        return status == 303

    return closed_loop(port, concurrency, people, request, seconds, prepare)


def client_address(n: int) -> str:
    """Return the n-th distinct client address (10.0.0.0/8), as a proxy would pass it on."""
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def scenario_reset_from_many(port, identifiers, concurrency, addresses, seconds=None):
    """POST /reset for the identifiers, each request from a new client address (X-Forwarded-For).

    With seconds, the identifiers repeat until the time is up; without, each is asked for once.
    """

    def prepare(tab):
        tab.token = tab.csrf("/reset")

    def request(tab, identifier):
        headers = {"X-Forwarded-For": client_address(next(addresses))}
        status, _, _ = tab.request("POST", "/reset", {"csrf_token": tab.token, "identifier": identifier}, headers)
        return status == 303

    tabs = [loadgen.Browser("127.0.0.1", port) for _ in range(concurrency)]
    for tab in tabs:
        prepare(tab)
    groups = split(list(identifiers), concurrency)
    repeat = endless if seconds is not None else iter
    tasks = [(lambda t, i=i: request(t, i) for i in repeat(group)) for group in groups]
    try:
        return loadgen.run(tabs, tasks, duration=seconds)
    finally:
        for tab in tabs:
            tab.close()


def redis_keys(port: int, database: int) -> int:
    """Return how many keys a Redis database holds."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "-n", str(database), "dbsize"], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


def shipped_limits_raised() -> dict:
    """Every limit a reset request or a page meets, with the windows pwdrst ships and amounts nothing reaches.

    The windows decide how long the limiter holds a key (an hour for RATELIMIT_RESET_REQUEST's second
    limit and RATELIMIT_RESET_MAIL), so the keys of 20,000 requests are all still held at the end.
    """
    from pwdrst import default_config

    keys = ("RESET_REQUEST", "RESET_MAIL", "LINK_USE", "LOGIN_ADDRESS", "STRENGTH")
    return {
        name: ";".join(
            "100000000 " + limit.strip().split(" ", 1)[1] for limit in getattr(default_config, name).split(";")
        )
        for name in (f"RATELIMIT_{key}" for key in keys)
    }


def flat_costs(slapd, smtp_port, redis, redis_port, sink, people, pool, args) -> dict:
    """Issue 16's flat costs: a reset-request round, N more requests from new addresses, the same round again.

    Its own app (the same recipe, limits with their shipped windows, one trusted proxy so that every
    request comes from a new client address) and its own Redis databases, so the keys it counts are
    the limiter's alone. The filler asks for every person of the directory in turn (a key per
    account and per recovery address too); the rounds ask for the same pool of people both times.
    """
    port = sandbox.free_port()
    audit_log = tempfile.NamedTemporaryFile(prefix="pwdrst-bench-flat-", suffix=".jsonl", delete=False).name
    memory = args.flat_limiter == "memory"
    extra = {**shipped_limits_raised(), "PROXY_COUNT": 1}
    if memory:
        extra["RATELIMIT_STORAGE_URI"] = "memory://"
    # In-memory limits are per process: several workers refuse to start with them (README, Security).
    workers = 1 if memory else args.workers
    app, _ = start_app(
        slapd, smtp_port, redis_port, port, workers, args.threads, audit_log, extra=extra, databases=(2, 3)
    )
    meter = CpuMeter({"app": app.pid, "slapd": slapd.process.pid, "smtp": sink.process.pid, "redis": redis.pid})
    addresses = itertools.count(1)
    identifiers = [p.mail[0] for p in pool]
    everyone = [p.mail[0] for p in people]
    concurrency, seconds = args.concurrency, args.flat_seconds

    def round_():
        return measured(
            meter,
            lambda: scenario_reset_from_many(port, identifiers, concurrency, addresses, seconds),
            sink.count(),
            sink,
            1,
        )

    result = {"limiter": "memory (1 worker)" if memory else "redis", "keys": {}, "load_average_1min": []}
    try:
        # Not measured: a fresh worker's first requests load templates, dictionaries and connections.
        scenario_reset_from_many(port, identifiers, concurrency, addresses, 3)
        sink.wait_for(sink.count() + 1, 5)
        result["load_average_1min"].append(load_average())
        result["keys"]["before"] = redis_keys(redis_port, 2)
        result["first"] = round_()
        result["keys"]["after_first"] = redis_keys(redis_port, 2)
        fill, chunks = [], 4
        per_chunk = args.flat_requests // chunks
        print(f"  flat: {args.flat_requests} reset requests from as many addresses...", flush=True)
        for c in range(chunks):
            batch = [everyone[(c * per_chunk + n) % len(everyone)] for n in range(per_chunk)]
            fill.append(
                measured(
                    meter,
                    lambda batch=batch: scenario_reset_from_many(port, batch, concurrency, addresses),
                    sink.count(),
                    sink,
                    1,
                )
            )
        result["fill"] = fill
        result["keys"]["after_fill"] = redis_keys(redis_port, 2)
        result["load_average_1min"].append(load_average())
        result["second"] = round_()
        result["keys"]["after_second"] = redis_keys(redis_port, 2)
        result["load_average_1min"].append(load_average())
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        app.wait(60)
        os.unlink(audit_log)
    result["ratio"] = result["second"]["cpu_ms"]["app"] / result["first"]["cpu_ms"]["app"]
    # The load generator does the same work for every request whatever the limiter holds: how its
    # CPU per request moved between the rounds is how the shared box's speed moved (host load,
    # frequency), which the app's figure carries too.
    control = result["second"]["cpu_ms"]["loadgen"] / result["first"]["cpu_ms"]["loadgen"]
    result["control_ratio"] = control
    result["normalised_ratio"] = result["ratio"] / control
    result["requests_between"] = sum(f["count"] for f in fill)
    return result


def onboarding_mail(env, person) -> tuple[str, bytes]:
    """Return the sender and bytes of the mail bulk-issue sends a person, rendered by the app's own code."""
    from pwdrst import mail
    from pwdrst.links import reset_link

    with app_from(env) as app:
        account = app.extensions["pwdrst.directory"].get_account(person.uid)
        max_age = int(app.config["CLI_LINK_MAX_AGE"])
        link = reset_link(account, "helpdesk", max_age)
        draft = mail.helpdesk_link.draft(account, account.recovery_addresses, link, max_age, issued_by="administrator")
        rendered = draft.render(app)
        wire = rendered.wire()  # the bytes the app sends (Flask-Mail builds them only for odd addresses)
        return wire.sender, wire.data


def onboarding_costs(slapd, env, sink, meter, people, profile=None) -> dict:
    """Issue 16's onboarding: bulk-issue for every person, beside raw searches and raw mail for as many."""
    workdir = tempfile.mkdtemp(prefix="pwdrst-bench-onboarding-")
    rows_csv, report_csv = os.path.join(workdir, "rows.csv"), os.path.join(workdir, "report.csv")
    audit_log = os.path.join(workdir, "audit.jsonl")
    onboarding.write_rows(rows_csv, people)
    cli_env = {k: v for k, v in env.items() if not k.startswith("PWDRST_GUNICORN_")}
    cli_env["PWDRST_AUDIT_LOG"] = audit_log
    rows = len(people)
    result = {"rows": rows, "load_average_1min": [load_average()]}
    try:
        mails_before = sink.count()
        before = meter.snapshot()
        bulk = onboarding.run_bulk_issue(cli_env, rows_csv, report_csv, audit_log, sink.count, ROOT, profile)
        arrived, waited = sink.wait_for(mails_before + rows, timeout=60)
        after = meter.snapshot()
        if bulk["exit_code"] != 0:
            raise RuntimeError(f"bulk-issue failed ({bulk['exit_code']}): {bulk['stderr_tail']}")
        cpu = CpuMeter.per_request(before, after, rows)
        # The command is this process's child: once reaped, its CPU is in this process's cutime too.
        cpu["loadgen"] -= bulk["cpu_ms"] / rows
        cpu["app"] = bulk["cpu_ms"] / rows
        bulk.update(
            mails=arrived - mails_before,
            mails_waited_after_exit_s=waited,
            outcomes=onboarding.outcomes(report_csv),
            cpu_ms_per_row=cpu,
            memory_mib=onboarding.memory_at(bulk["samples"], rows),
        )
        result["bulk"] = bulk
        result["load_average_1min"].append(load_average())

        before = meter.snapshot()
        searches = onboarding.raw_searches(slapd.url, people)
        after = meter.snapshot()
        searches["cpu_ms"] = CpuMeter.per_request(before, after, rows)
        result["searches"] = searches

        sender, message = onboarding_mail(env, people[0])
        mails_before = sink.count()
        before = meter.snapshot()
        raw = onboarding.raw_mails(sink.port, sender, lambda n: [people[n % rows].recovery[0]], message, rows)
        arrived, _ = sink.wait_for(mails_before + rows, timeout=60)
        after = meter.snapshot()
        raw["cpu_ms"] = CpuMeter.per_request(before, after, rows)
        raw["mails"] = arrived - mails_before
        result["sink"] = raw
        result["load_average_1min"].append(load_average())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["reference_s"] = result["searches"]["seconds"] + result["sink"]["seconds"]
    result["ratio"] = result["bulk"]["seconds"] / result["reference_s"]
    return result


def run_extra(only, slapd, redis, redis_port, env, people, pool, args, extra, started_at) -> None:
    """Run the scenarios run once (flat, onboarding), with an instant SMTP sink of their own."""
    sink = Sink(sandbox.free_port(), 0.0)
    try:
        if "flat" in only:
            print(f"flat costs ({time.monotonic() - started_at:.0f} s)...", flush=True)
            extra["flat"] = flat_costs(slapd, sink.port, redis, redis_port, sink, people, pool, args)
            extra["memory_limiter"] = memory_limiter_costs(args.flat_requests)
        if "onboarding" in only:
            print(f"onboarding: {args.onboard_rows} people ({time.monotonic() - started_at:.0f} s)...", flush=True)
            meter = CpuMeter({"slapd": slapd.process.pid, "smtp": sink.process.pid, "redis": redis.pid})
            cli_env = {**env, "PWDRST_MAIL_PORT": str(sink.port)}
            extra["onboarding"] = onboarding_costs(
                slapd, cli_env, sink, meter, people[: args.onboard_rows], args.profile
            )
    finally:
        sink.stop()


def memory_limiter_costs(keys: int) -> dict:
    """Per-check CPU of the in-memory limit stores with no keys and with `keys` held (benchmarks/limits_memory.py)."""
    import limits_memory

    from pwdrst.ratelimit import FlatMemoryStorage

    rows = {}
    for storage in (FlatMemoryStorage, limits_memory.MemoryStorage):
        empty = limits_memory.per_check_cpu(storage, 0, 200, 0.015)
        held = limits_memory.per_check_cpu(storage, keys, 200, 0.015)
        rows[storage.__name__] = {"empty_us": empty * 1e6, "held_us": held * 1e6, "ratio": held / empty}
    return rows


def scenario_links(port, links, concurrency, generations, seconds):
    """Open a link, fetch the form, set the password: each link once (the window ends when they run out)."""
    pending = list(links)

    def use(tab, _):
        try:
            person, link = pending.pop()
        except IndexError:
            return None  # another connection took the last link
        n = int(person.uid[1:])
        tab.cookies.clear()
        status, _, _ = tab.request("GET", link.split(f"{port}", 1)[1])
        if status != 303:
            return False
        token = tab.csrf("/reset/new")
        new = new_password(n, generations[n] + 1)
        status, _, _ = tab.request("POST", "/reset/new", {"csrf_token": token, "new_password": new, "confirm": new})
        if status == 303:
            generations[n] += 1
        return status == 303

    tabs = [loadgen.Browser("127.0.0.1", port) for _ in range(concurrency)]

    def tasks():
        while pending:
            yield lambda t: use(t, None)

    try:
        return loadgen.run(tabs, [tasks() for _ in tabs], duration=seconds)
    finally:
        for tab in tabs:
            tab.close()


def scenario_page(port, concurrency, seconds):
    return closed_loop(port, concurrency, range(1000), lambda tab, _: tab.request("GET", "/reset")[0] == 200, seconds)


def app_settings_only(env: dict) -> dict:
    """Return the app's own settings of a benchmark environment (not gunicorn's)."""
    return {k: v for k, v in env.items() if k.startswith("PWDRST_") and not k.startswith("PWDRST_GUNICORN_")}


@contextlib.contextmanager
def app_from(env):
    """Yield an app of this process made from the benchmark's settings (same key, same directory)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(app_settings_only(env))
    try:
        from pwdrst import create_app

        app = create_app()
        with app.app_context():
            yield app
            app.extensions["pwdrst.directory"].close()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def issue_links(env, people, max_age=3600):
    """Issue links with the app's own code (same key, same fingerprints), as the helpdesk would."""
    from pwdrst.links import reset_link

    with app_from(env) as app:
        directory = app.extensions["pwdrst.directory"]
        return [(p, reset_link(directory.get_account(p.uid), "helpdesk", max_age)) for p in people]


# -- the run


def measured(meter, run, mails_before=None, sink=None, mails_per_request=0):
    """Run a scenario; return its summary with the CPU per request, counting the mail it caused."""
    before = meter.snapshot()
    result = run()
    extra = {}
    if sink is not None and mails_per_request:
        expected = mails_before + mails_per_request * len(result.latencies)
        arrived, _ = sink.wait_for(expected, timeout=120)
        extra["mails"] = arrived - mails_before
        extra["mails_expected"] = expected - mails_before
    after = meter.snapshot()
    return summary(result, cpu_ms=meter.per_request(before, after, len(result.latencies)), **extra)


def load_average() -> float:
    return os.getloadavg()[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark pwdrst against the raw directory change.")
    parser.add_argument("--people", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="the least length of every round")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, default=None, help="threads per worker (default: gunicorn.conf.py's)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections of the load generator")
    parser.add_argument("--links", type=int, default=1500, help="links issued per round (each used once)")
    parser.add_argument("--smtp-delay", type=float, default=2.0, help="the slow SMTP server's delay")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios to run, of {', '.join(ROUNDS + EXTRA)} (default: {', '.join(ROUNDS)}; "
        "flat and onboarding take several minutes each, so they run only when named)",
    )
    parser.add_argument("--flat-requests", type=int, default=20000, help="flat: reset requests between its rounds")
    parser.add_argument("--flat-seconds", type=float, default=10.0, help="flat: the length of each of its rounds")
    parser.add_argument(
        "--flat-limiter",
        choices=("redis", "memory"),
        default="redis",
        help="flat: the limits' storage (memory runs one gunicorn worker: several refuse in-memory limits)",
    )
    parser.add_argument("--onboard-rows", type=int, default=10000, help="onboarding: rows (as many people at least)")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="onboarding: record bulk-issue with py-spy (collapsed stacks, every thread) into FILE; slows it down",
    )
    parser.add_argument("--meter", action="store_true", help="each change first asks the strength meter")
    parser.add_argument("--no-mail", action="store_true", help="no notification mail after a change")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "latest.json"))
    args = parser.parse_args(argv)

    only = set(filter(None, args.only.split(","))) or set(ROUNDS)
    if only - set(ROUNDS + EXTRA):
        parser.error(f"unknown scenarios: {', '.join(sorted(only - set(ROUNDS + EXTRA)))}")
    seconds, concurrency = args.seconds, args.concurrency
    if args.people < 1000 + args.links:
        parser.error(f"--people must be at least {1000 + args.links}")
    if "onboarding" in only and args.people < args.onboard_rows:
        print(f"onboarding: {args.onboard_rows} rows need as many people: --people {args.onboard_rows}")
        args.people = args.onboard_rows
    started_at = time.monotonic()
    people = make_people(args.people)
    generations = {int(p.uid[1:]): 0 for p in people}
    pools = {
        "reference": people[:600],
        "change": people[600 : 600 + concurrency],
        "reset": people[600 + concurrency : 1000],
        "links": people[1000 : 1000 + args.links],
    }
    print(f"starting slapd with {args.people} people...", flush=True)
    slapd = sandbox.Slapd(people)
    slapd.start()
    redis_port = sandbox.free_port()
    redis = start_redis(redis_port)
    smtp_port = sandbox.free_port()
    sink = Sink(smtp_port, 0.0)
    port = sandbox.free_port()
    audit_log = tempfile.NamedTemporaryFile(prefix="pwdrst-bench-audit-", suffix=".jsonl", delete=False).name
    app, env = start_app(
        slapd, smtp_port, redis_port, port, args.workers, args.threads, audit_log, mail=not args.no_mail
    )
    print(f"gunicorn as gunicorn.conf.py ships it (unless --workers, --threads); load: {concurrency} connections")
    parts = {"app": app.pid, "slapd": slapd.process.pid, "smtp": sink.process.pid, "redis": redis.pid}
    meter = CpuMeter(parts)
    figures = {k: [] for k in ("reference", "change", "reset_fast", "reset_slow", "links", "page")}
    loads = []
    extra = {}
    mail_each = 0 if args.no_mail else 1
    try:
        for r in range(args.rounds):
            loads.append(load_average())
            figures["reference"].append(reference(slapd.url, pools["reference"], generations, seconds, meter))
            if "change" in only:
                figures["change"].append(
                    measured(
                        meter,
                        lambda: scenario_change(port, pools["change"], generations, seconds, args.meter),
                        sink.count(),
                        sink,
                        mail_each,
                    )
                )
            if "reset" in only:
                figures["reset_fast"].append(
                    measured(
                        meter,
                        lambda: scenario_reset(port, pools["reset"], concurrency, seconds),
                        sink.count(),
                        sink,
                        1,
                    )
                )
            if "links" in only:
                links = issue_links(env, pools["links"])
                row = measured(
                    meter,
                    lambda links=links: scenario_links(port, links, concurrency, generations, seconds),
                    sink.count(),
                    sink,
                    mail_each,
                )
                if row["seconds"] < seconds:
                    print(f"  link use ran out of links after {row['seconds']:.1f} s: raise --links", flush=True)
                figures["links"].append(row)
            if "page" in only:
                figures["page"].append(measured(meter, lambda: scenario_page(port, concurrency, seconds)))
            print(f"round {r + 1} of {args.rounds} done ({time.monotonic() - started_at:.0f} s)", flush=True)

        if only & set(EXTRA):
            run_extra(only, slapd, redis, redis_port, env, people, pools["reset"], args, extra, started_at)

        if "slow" in only:
            # The slow SMTP server: one round (its mails take a while to drain), after the others.
            sink.stop()
            sink = Sink(smtp_port, args.smtp_delay)
            meter.parts["smtp"] = sink.process.pid
            figures["reset_slow"].append(
                # Not waiting for its mail: a 2 s server takes minutes to drain what 5 s of requests queue.
                measured(meter, lambda: scenario_reset(port, pools["reset"], concurrency, seconds))
            )
        figures["reference"].append(reference(slapd.url, pools["reference"], generations, seconds, meter))
        loads.append(load_average())
        rss = worker_rss(app.pid)
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        app.wait(60)
        sink.stop()
        redis.terminate()
        redis.wait(10)
        slapd.close()
        os.unlink(audit_log)

    from policy import JAN, Policy, time_checks  # benchmarks/policy.py

    bounded = Policy(organisation_words=["Uniwersytet"])
    bounded.check("warm-up-the-dictionaries", JAN)
    policy_worst = max(max(row.values()) for row in time_checks(bounded, 5, random.Random(1))[0].values())
    report = build_report(figures, rss, policy_worst, loads, args)
    report.update(extra)
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
        "seconds": result.elapsed,
        "failures": result.failures,
        **extra,
    }


PARTS = ("app", "slapd", "smtp", "redis", "loadgen")


def build_report(figures, rss, policy_worst, loads, args) -> dict:
    reference_rate = statistics.median(f["rate"] for f in figures["reference"])
    rows = {}
    for name, runs in figures.items():
        if not runs:
            continue
        rows[name] = {
            "rate": statistics.median(r["rate"] for r in runs),
            "p50_ms": statistics.median(r.get("p50_ms", 0) for r in runs),
            "p99_ms": statistics.median(r.get("p99_ms", 0) for r in runs),
            "failures": sum(r.get("failures", 0) for r in runs),
            "shortest_round_s": min(r["seconds"] for r in runs),
            "requests": sum(r["count"] for r in runs),
            "cpu_ms": {part: statistics.median(r["cpu_ms"][part] for r in runs) for part in PARTS},
            "per_round_rate": [round(r["rate"], 1) for r in runs],
            "per_round_app_cpu_ms": [round(r["cpu_ms"]["app"], 2) for r in runs],
        }
        if any("mails" in r for r in runs):
            rows[name]["mails"] = sum(r.get("mails", 0) for r in runs)
            rows[name]["mails_expected"] = sum(r.get("mails_expected", 0) for r in runs)
        rows[name]["ratio"] = rows[name]["rate"] / reference_rate
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": vars(args),
        "load_average_1min": [round(v, 2) for v in loads],
        "reference_changes_per_s": reference_rate,
        "rows": rows,
        "worker_rss_mib": [round(k / 1024, 1) for k in rss],
        "policy_worst_ms": policy_worst,
    }


def print_report(report) -> None:
    names = {
        "reference": "reference: ldap3 bind + Password Modify",
        "change": "change password (POST /password)",
        "reset_fast": "reset request, SMTP instant",
        "reset_slow": "reset request, SMTP 2 s",
        "links": "link use (open, form, set)",
        "page": "page (GET /reset)",
    }
    print()
    print(f"{'':<40}{'':>8}{'':>6}{'':>7}{'':>7}{'':>4}{'CPU ms per request':^35}")
    head = f"{'figure':<40}{'per s':>8}{'ratio':>6}{'p50':>7}{'p99':>7}{'bad':>4}"
    print(head + "".join(f"{p:>7}" for p in PARTS))
    for key, label in names.items():
        row = report["rows"].get(key)
        if not row:
            continue
        latency = f"{row['p50_ms']:>7.1f}{row['p99_ms']:>7.1f}" if key != "reference" else f"{'':>14}"
        print(
            f"{label:<40}{row['rate']:>8.1f}{row['ratio']:>6.2f}{latency}{row['failures']:>4}"
            + "".join(f"{row['cpu_ms'][p]:>7.2f}" for p in PARTS)
        )
    print(f"\nload average (1 min) at each round's start: {report['load_average_1min']}")
    for key, row in report["rows"].items():
        mails = f"; mails {row['mails']} of {row['mails_expected']}" if "mails" in row else ""
        print(
            f"{key}: {row['requests']} requests, shortest round {row['shortest_round_s']:.1f} s, per round/s "
            f"{row['per_round_rate']}, app CPU ms {row['per_round_app_cpu_ms']}{mails}"
        )
    print(f"policy check, worst case: {report['policy_worst_ms']:.1f} ms")
    print(f"gunicorn workers: {len(report['worker_rss_mib'])}, resident memory (MiB): {report['worker_rss_mib']}")
    if "flat" in report:
        print_flat(report["flat"], report.get("memory_limiter"))
    if "onboarding" in report:
        print_onboarding(report["onboarding"])


def cpu_columns(cpu: dict) -> str:
    return "".join(f"{cpu[p]:>7.2f}" for p in PARTS)


def print_flat(flat: dict, memory: dict | None) -> None:
    loads = ", ".join(f"{v:.2f}" for v in flat["load_average_1min"])
    print(f"\nflat costs: limits in {flat['limiter']}, load average (1 min) before, between, after: {loads}")
    print(f"{'':<40}{'':>8}{'':>8}{'CPU ms per request':^35}")
    head = f"{'reset requests, each from a new address':<40}{'count':>8}{'per s':>8}"
    print(head + "".join(f"{p:>7}" for p in PARTS))
    rows = [("first round", flat["first"])]
    rows += [(f"  then {f['count']} more ({i + 1} of {len(flat['fill'])})", f) for i, f in enumerate(flat["fill"])]
    rows.append(("second round", flat["second"]))
    for label, row in rows:
        print(f"{label:<40}{row['count']:>8}{row['rate']:>8.1f}{cpu_columns(row['cpu_ms'])}")
    verdict = "met" if flat["ratio"] <= 1.05 else f"missed by {(flat['ratio'] - 1.05) * 100:.1f} points"
    print(
        f"second / first round, app CPU per request: {flat['ratio']:.3f} after {flat['requests_between']} requests "
        f"(goal: at most 5 % above the first: {verdict})"
    )
    if "normalised_ratio" in flat:
        print(
            f"  the load generator's own CPU per request (the same work in both rounds) moved "
            f"{flat['control_ratio']:.3f}; the app's ratio divided by it: {flat['normalised_ratio']:.3f}"
        )
    keys = flat["keys"]
    print(
        f"limiter keys held: {keys['before']} before, {keys['after_first']} after the first round, "
        f"{keys['after_fill']} before the second, {keys['after_second']} after it"
        + (" (Redis)" if flat["limiter"] == "redis" else " (Redis unused by the limits: these are 0)")
    )
    for name, row in (memory or {}).items():
        print(
            f"in-memory store {name}, CPU per check: {row['empty_us']:.1f} µs with no keys, "
            f"{row['held_us']:.1f} µs with {flat['requests_between']} held, ratio {row['ratio']:.2f}"
        )


def print_onboarding(onb: dict) -> None:
    bulk, searches, sink = onb["bulk"], onb["searches"], onb["sink"]
    loads = ", ".join(f"{v:.2f}" for v in onb["load_average_1min"])
    rows = onb["rows"]
    print(f"\nonboarding: {rows} rows, load average (1 min) before bulk-issue, searches, SMTP: {loads}")
    print(f"{'':<40}{'':>8}{'':>8}{'CPU ms per row (app = the command)':^35}")
    print(f"{'what':<40}{'seconds':>8}{'ratio':>8}" + "".join(f"{p:>7}" for p in PARTS))
    reference = onb["reference_s"]
    for label, row, cpu in (
        ("bulk-issue (flask --app pwdrst ...)", bulk, bulk["cpu_ms_per_row"]),
        ("raw ldap3 searches, one connection", searches, {**searches["cpu_ms"], "app": 0.0}),
        ("raw smtplib to the sink, one connection", sink, {**sink["cpu_ms"], "app": 0.0}),
    ):
        print(f"{label:<40}{row['seconds']:>8.1f}{row['seconds'] / reference:>8.2f}{cpu_columns(cpu)}")
    verdict = "met" if onb["ratio"] <= 3 else f"missed: {onb['ratio'] / 3:.2f} times the goal"
    print(
        f"bulk-issue / (searches + SMTP sink) = {bulk['seconds']:.1f} / ({searches['seconds']:.1f} + "
        f"{sink['seconds']:.1f}) = {onb['ratio']:.2f} (goal at most 3: {verdict})"
    )
    memory = bulk["memory_mib"]
    print(
        f"bulk-issue: mails delivered {bulk['mails']} of {rows}; outcomes {bulk['outcomes']}; first row after "
        f"{bulk['first_row_s'] or 0:.1f} s; CPU {bulk['cpu_ms'] / 1000:.1f} s (user {bulk['user_ms'] / 1000:.1f}, "
        f"system {bulk['system_ms'] / 1000:.1f})"
    )
    print(
        f"bulk-issue memory (MiB, PSS of its {memory['processes']} processes) at 10 %, 50 %, 100 % of the rows: "
        f"{memory['10%']}, {memory['50%']}, {memory['100%']}; peak {memory['peak']}"
    )
    print(f"raw mails: {sink['mails']} of {rows} delivered, {sink['message_bytes']} bytes each (a rendered mail)")


if __name__ == "__main__":
    sys.exit(main())
