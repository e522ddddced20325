"""Command-line tools for administrators: `flask --app pwdrst <command>`."""

import csv
import gc
import getpass
import io
import multiprocessing
import os
import queue
import resource
import smtplib
import stat
import sys
import threading
import traceback

import click
from flask import current_app
from flask.cli import with_appcontext

from pwdrst import breach, links, ratelimit, reminders
from pwdrst.directory import DirectoryError, directory
from pwdrst.display import mask_address
from pwdrst.links import CannotIssue
from pwdrst.mail import DirectSender, mail_queue


def init_app(app) -> None:
    """Register the commands."""
    app.cli.add_command(check_config)
    app.cli.add_command(issue_link_command)
    app.cli.add_command(bulk_issue)
    app.cli.add_command(build_breach_filter)
    app.cli.add_command(notify_expiring)


@click.command("check-config")
@with_appcontext
def check_config():
    """Check the settings, the directory (service bind, base DN) and the SMTP server."""
    # The settings were already validated when the app was created: an error stops before here.
    click.echo("settings: ok")
    if current_app.config["POLICY_BREACH_FILTER"]:
        try:
            info = breach.inspect(current_app.config["POLICY_BREACH_FILTER"])
        except breach.FilterFileError as exc:
            raise click.ClickException(f"breach filter: {exc}") from None
        click.echo(f"breach filter: ok ({info.describe()})")
    else:
        click.echo("breach filter: none (POLICY_BREACH_FILTER is not set)")
    try:
        directory.check_service()
    except DirectoryError as exc:
        raise click.ClickException(f"directory: {explain_directory_error(exc)}") from None
    click.echo(f"directory: ok ({current_app.config['LDAP_BASE_DN']} readable by the service account)")
    click.echo(f"reminders: {describe_reminder_prerequisites()}")
    try:
        threshold = directory.lockout_threshold()
    except DirectoryError as exc:
        raise click.ClickException(f"lockout: {explain_directory_error(exc)}") from None
    problem = ratelimit.lockout_margin(threshold)
    if problem:
        raise click.ClickException(f"lockout: {problem}")
    allowed = ratelimit.login_account_budget()
    if threshold:
        click.echo(
            f"lockout: ok (the directory locks an account after {threshold} failed logins, pwdMaxFailure; "
            f"pwdrst allows {allowed}, RATELIMIT_LOGIN_ACCOUNT)"
        )
    else:
        click.echo(f"lockout: the directory's policy sets no pwdMaxFailure; pwdrst allows {allowed} failed logins")
    server, port = current_app.config["MAIL_SERVER"], current_app.config["MAIL_PORT"]
    try:
        with smtplib.SMTP(server, port, timeout=float(current_app.config["MAIL_TIMEOUT"])) as smtp:
            smtp.noop()
    except (OSError, smtplib.SMTPException) as exc:
        raise click.ClickException(f"mail: the SMTP server {server}:{port} is unreachable ({exc})") from None
    click.echo(f"mail: ok ({server}:{port} answers)")


def describe_reminder_prerequisites() -> str:
    """Say whether notify-expiring can read the maximum password age, and its value, or plainly why not."""
    config = current_app.config
    if config["LDAP_FLAVOUR"] == "ad":
        source = f"maxPwdAge of the domain {directory.domain_dn}"
    elif not config["LDAP_PASSWORD_POLICY_DN"]:
        return "LDAP_PASSWORD_POLICY_DN is not set: notify-expiring only sees people with their own pwdPolicySubentry"
    else:
        source = f"pwdMaxAge of {config['LDAP_PASSWORD_POLICY_DN']}"
    try:
        max_age = directory.password_max_age()
    except DirectoryError as exc:
        return f"the {source} cannot be read ({explain_directory_error(exc)}): notify-expiring would mail nobody"
    if not max_age:
        return (
            f"no {source} is readable by the service account: passwords never expire, so notify-expiring mails "
            "nobody (if the policy sets one, give the service account read access to it)"
        )
    days = max_age / 86400
    return (
        f"ok (passwords expire {days:g} days after a change: {source}, readable by the service account; "
        f"sent reminders are kept in {reminders.describe_record()})"
    )


def explain_directory_error(exc: DirectoryError) -> str:
    """Turn a directory error into a sentence for an administrator."""
    text = str(exc)
    if "invalidCredentials" in text:
        return "the service account cannot bind: wrong LDAP_BIND_DN or LDAP_BIND_PASSWORD"
    if "TLS: " in text:
        # The pool's "TLS: host:port: <what is wrong with its certificate>".
        return "TLS to " + text.split("TLS: ", 1)[1]
    if "no directory server answered" in text:
        return f"no server of LDAP_URL answers ({', '.join(current_app.config['LDAP_URL'])})"
    return text


def cli_actor() -> str:
    """Return the audit actor of a command: cli:<unix user>."""
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli:unknown"


def checked_max_age(max_age: int | None) -> int:
    """Return the link lifetime, refusing one longer than CLI_LINK_MAX_AGE_CAP."""
    cap = int(current_app.config["CLI_LINK_MAX_AGE_CAP"])
    if max_age is None:
        return int(current_app.config["CLI_LINK_MAX_AGE"])
    if not 0 < max_age <= cap:
        raise click.BadParameter(f"must be between 1 and {cap} seconds (CLI_LINK_MAX_AGE_CAP)", param_hint="--max-age")
    return max_age


def report_row(identifier: str, max_age: int, actor: str, dry_run: bool) -> tuple[str, str]:
    """Mail one person's link and return the report's (outcome, detail) for it."""
    try:
        account, _ = links.issue_admin_link(identifier, True, max_age, actor, dry_run)
    except CannotIssue as exc:
        return exc.reason, exc.detail
    except DirectoryError as exc:
        return "error", explain_directory_error(exc)
    if dry_run:
        return "would_send", account.login
    return "sent", ", ".join(mask_address(a) for a in account.recovery_addresses)


def deliver_queued_mail(count: int) -> None:
    """Wait for queued mail before the command exits; fail loudly if any stays undelivered."""
    queue = mail_queue()
    if not queue.drain(timeout=max(30.0, count * 2.0)) or queue.failed:
        raise click.ClickException("some mail could not be delivered: see the log for the recipients")


@click.command("issue-link")
@click.argument("identifier")
@click.option("--send/--print", "send", default=True, help="Mail it to the recovery address (default) or print it.")
@click.option("--max-age", type=int, help="Seconds the link lives (default CLI_LINK_MAX_AGE).")
@click.option("--allow-protected", is_flag=True, help="Also for members of LDAP_PROTECTED_GROUP.")
@with_appcontext
def issue_link_command(identifier, send, max_age, allow_protected):
    """Issue a reset link for one person, by login or any address."""
    max_age = checked_max_age(max_age)
    try:
        account, link = links.issue_admin_link(identifier, send, max_age, cli_actor(), allow_protected=allow_protected)
    except CannotIssue as exc:
        raise click.ClickException(f"{exc.reason}: {exc.detail}") from None
    if link:
        click.echo(link)
        return
    deliver_queued_mail(1)
    click.echo("sent to " + ", ".join(mask_address(a) for a in account.recovery_addresses))


# Rows from which bulk-issue spreads its work over processes by default: below, forking costs more than it saves.
PARALLEL_FROM_ROWS = 200


def default_jobs(rows: int) -> int:
    """Return how many processes bulk-issue uses for so many rows: one per core (at most 4) for a large file."""
    return min(4, os.cpu_count() or 1) if rows >= PARALLEL_FROM_ROWS else 1


@click.command("bulk-issue")
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--dry-run", is_flag=True, help="Check every row; issue and send nothing.")
@click.option("--report", type=click.File("w", encoding="utf-8"), help="Write the CSV report here (default: stdout).")
@click.option("--max-age", type=int, help="Seconds the links live (default CLI_LINK_MAX_AGE).")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    help=f"Processes issuing links at once (default: one per core, at most 4, from {PARALLEL_FROM_ROWS} rows).",
)
@with_appcontext
def bulk_issue(csv_file, dry_run, report, max_age, jobs):
    """Mail a reset link to each person of a CSV file (one identifier per row, first column)."""
    max_age = checked_max_age(max_age)
    actor = cli_actor()
    rows = [row[0].strip() for row in csv.reader(csv_file) if row and row[0].strip()]
    if rows and rows[0].lower() == "identifier":
        rows = rows[1:]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["identifier", "outcome", "detail"])
    seen: set[str] = set()
    first_of_each = []
    for identifier in rows:
        if identifier.lower() not in seen:
            seen.add(identifier.lower())
            first_of_each.append(identifier)
    issued = issue_rows(first_of_each, max_age, actor, dry_run, jobs or default_jobs(len(first_of_each)))
    seen.clear()
    counts: dict[str, int] = {}
    failure = None
    try:
        with click.progressbar(rows, label="Issuing links", file=sys.stderr) as bar:
            for identifier in bar:
                if identifier.lower() in seen:
                    outcome, detail = "duplicate", "already in this file"
                else:
                    seen.add(identifier.lower())
                    outcome, detail = next(issued)
                counts[outcome] = counts.get(outcome, 0) + 1
                writer.writerow([identifier, outcome, detail])
        # Let the processes, if any, hand over their last word (mail they could not deliver).
        for _ in issued:
            pass
        if counts.get("sent"):
            deliver_queued_mail(counts["sent"])
    except click.ClickException as exc:
        failure = exc  # the links issued so far are real: the report must still say which they are
    (report or sys.stdout).write(out.getvalue())
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no rows"
    done = sum(counts.values())
    if done < len(rows):
        summary += f"; stopped after {done} of {len(rows)} rows"
    click.echo(f"bulk-issue: {summary}", err=True)
    if failure is not None:
        raise failure


def issue_rows(identifiers, max_age: int, actor: str, dry_run: bool, jobs: int):
    """Yield report_row's (outcome, detail) for each identifier, in their order; with jobs > 1, from forked processes.

    One process spends most of its time on the directory's and the SMTP server's answers and on
    Python work that holds the interpreter lock (reading entries, rendering and encoding mail), so
    a large file is shared over several: each has its own directory connection and mail queue, and
    delivers its mail before it ends. Rows go out through a bounded queue and come back in any
    order; they are yielded in file order, so memory holds at most the rows in flight.
    """
    if jobs <= 1 or len(identifiers) <= 1:
        for identifier in identifiers:
            yield report_row(identifier, max_age, actor, dry_run)
        return
    yield from _issue_in_processes(identifiers, max_age, actor, dry_run, min(jobs, len(identifiers)))


def _issue_in_processes(identifiers, max_age, actor, dry_run, jobs):
    # fork: each process starts with the app as it is, and no thread of this one is running yet
    # (the mail queue starts its threads on the first mail), so nothing is held at the fork.
    context = multiprocessing.get_context("fork")
    tasks = context.Queue(maxsize=jobs * 32)
    results = context.Queue()
    app = current_app._get_current_object()
    workers = [
        context.Process(target=_bulk_worker, args=(app, tasks, results, max_age, actor, dry_run), daemon=True)
        for _ in range(jobs)
    ]
    # Frozen, the objects they inherit stay out of their collections, which would otherwise write to
    # (and so copy) every page of them: the processes share this one's memory instead of doubling it.
    gc.freeze()
    try:
        for worker in workers:
            worker.start()
    finally:
        gc.unfreeze()

    def feed():
        for task in enumerate(identifiers):
            tasks.put(task)
        for _ in workers:
            tasks.put(None)

    threading.Thread(target=feed, name="pwdrst-bulk-feed", daemon=True).start()
    done: dict[int, tuple[str, str]] = {}
    next_row = finished = undelivered = 0
    try:
        while finished < jobs:
            try:
                message = results.get(timeout=1)
            except queue.Empty:
                if any(w.exitcode not in (None, 0) for w in workers):
                    raise click.ClickException("a bulk-issue process ended unexpectedly: see the log") from None
                continue
            if message[0] == "row":
                done[message[1]] = message[2]
                while next_row in done:
                    yield done.pop(next_row)
                    next_row += 1
            elif message[0] == "done":
                finished += 1
                undelivered += message[1]
            else:
                raise click.ClickException(f"a bulk-issue process failed:\n{message[1]}")
    finally:
        tasks.cancel_join_thread()
        for worker in workers:
            if worker.is_alive() and finished < jobs:
                worker.terminate()
            worker.join(5)
    if undelivered:
        raise click.ClickException("some mail could not be delivered: see the log for the recipients")


def _bulk_worker(app, tasks, results, max_age, actor, dry_run) -> None:
    """Issue the rows of the task queue until None; deliver this process's mail; report each row and the end."""
    try:
        with app.app_context():
            # Connections inherited from the parent are shared with it and the other processes: new ones.
            directory.after_fork()
            sent = 0
            while (task := tasks.get()) is not None:
                index, identifier = task
                outcome = report_row(identifier, max_age, actor, dry_run)
                sent += outcome[0] == "sent"
                results.put(("row", index, outcome))
            queue_ = mail_queue()
            delivered = queue_.drain(timeout=max(30.0, sent * 2.0)) and not queue_.failed
            results.put(("done", 0 if delivered else 1))
    except BaseException:  # noqa: BLE001 - whatever it was, the parent must hear of it rather than wait
        results.put(("failed", traceback.format_exc()))
        raise


@click.command("build-breach-filter")
@click.argument("hashes", type=click.File("rb"))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The filter file to write (replaced).")
@click.option("--min-count", type=click.IntRange(min=1), default=1, help="Keep hashes seen at least N times.")
def build_breach_filter(hashes, out, min_count):
    """Build the breach filter from Have I Been Pwned's SHA-1 list (HASH:COUNT lines; - for stdin).

    Memory holds one of 256 partitions at a time (about 8 bytes per entry of the largest, plus the
    filter library's work space), and spill files of 8 bytes per entry lie beside --out meanwhile.
    """
    progress = BuildProgress(regular_file_size(hashes))
    try:
        report = breach.build(hashes, out, min_count, on_read=progress.read, on_partition=progress.built)
    finally:
        progress.close()
    click.echo(
        f"read {report.lines:,} lines: {report.lowercase:,} in lower case (kept), {report.malformed:,} malformed "
        f"(skipped{', lines ' + ', '.join(map(str, report.malformed_lines)) if report.malformed_lines else ''}"
        f"{', ...' if report.malformed > len(report.malformed_lines) else ''}), "
        f"{report.below_min_count:,} seen fewer than {min_count} times (skipped)",
        err=True,
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    click.echo(f"largest partition {report.largest_partition:,} entries; peak memory {peak:.0f} MiB", err=True)
    click.echo(f"{out}: {report.summary()}")


def regular_file_size(stream) -> int | None:
    """Return the size of a regular file, or None for a pipe or terminal (standard input)."""
    try:
        status = os.fstat(stream.fileno())
    except (OSError, io.UnsupportedOperation):
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None


class BuildProgress:
    """Two progress bars on standard error: bytes read (a count when the size is unknown), then partitions."""

    def __init__(self, size: int | None):
        if size:
            self.bar = click.progressbar(length=size, label="Reading hashes", file=sys.stderr)
        else:
            # A generator has no length: the bar shows how many bytes it has read so far.
            self.bar = click.progressbar(
                (_ for _ in ()), label="Reading hashes (bytes)", show_pos=True, file=sys.stderr
            )
        self.bar.__enter__()

    def read(self, count: int) -> None:
        self.bar.update(count)

    def built(self, partition: int) -> None:
        if partition == 0:
            self.close()
            self.bar = click.progressbar(length=breach.PARTITIONS, label="Building partitions", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(1)

    def close(self) -> None:
        self.bar.__exit__(None, None, None)


@click.command("notify-expiring")
@click.option("--days", help="Days before expiry to remind at, e.g. 14,7,1 (default REMINDER_DAYS).")
@click.option("--dry-run", is_flag=True, help="Report who is due; send and record nothing.")
@click.option("--report", type=click.File("w", encoding="utf-8"), help="Write the CSV report here (default: stdout).")
@with_appcontext
def notify_expiring(days, dry_run, report):
    """Mail a reminder to each person whose password expires within one of the given days.

    Meant to run once a day (deploy/pwdrst-notify-expiring.timer). Each reminder goes once per
    password and threshold; what was sent is kept in Redis when RATELIMIT_STORAGE_URI names it,
    else in REMINDER_STATE_DIR/reminders.json.
    """
    try:
        thresholds = reminders.parse_days(days or ",".join(map(str, current_app.config["REMINDER_DAYS"])))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--days") from None
    actor = cli_actor()
    try:
        people = reminders.people()
    except DirectoryError as exc:
        raise click.ClickException(f"directory: {explain_directory_error(exc)}") from None
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["login", "days_left", "outcome"])
    counts: dict[str, int] = {}
    try:
        with (
            reminders.open_record() as record,
            DirectSender() as sender,
            click.progressbar(people, label="Checking", file=sys.stderr) as bar,
        ):
            for account, max_age in bar:
                row = reminders.remind(account, max_age, thresholds, record, actor, None if dry_run else sender)
                if row is None:
                    counts["no_expiry"] = counts.get("no_expiry", 0) + 1
                    continue
                counts[row.outcome] = counts.get(row.outcome, 0) + 1
                writer.writerow([row.login, row.days_left, row.outcome])
    except OSError as exc:
        raise click.ClickException(f"reminder record: {exc}") from None
    (report or sys.stdout).write(out.getvalue())
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nobody"
    click.echo(f"notify-expiring: {summary} (record: {reminders.describe_record()})", err=True)
    if counts.get("mail_failed"):
        raise click.ClickException(
            f"{counts['mail_failed']} reminders could not be delivered (see the log); the next run sends them again"
        )
