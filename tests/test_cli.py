"""Administrators' commands, through Flask's CLI runner against the real slapd and SMTP server."""

import csv
import io
import json

import pytest

from pwdrst import cli, sandbox


def report_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_issue_link_sends_to_the_recovery_address(
    runner, app, smtp, make_person, can_bind, audit, new_password, reset_flow
):
    person = make_person()
    result = runner.invoke(args=["issue-link", person.mail[1]])
    assert result.exit_code == 0, result.output
    assert "sent to" in result.output and person.recovery[0] not in result.output  # masked
    [message] = smtp.wait_for(1)
    assert message["X-Envelope-To"] == person.recovery[0]
    assert "jest gotowe" in smtp.text(message)
    assert reset_flow.set_password(smtp.link(message), client=app.test_client()).status_code == 303
    assert can_bind(person.dn, new_password)
    [event] = audit("cli_link")
    assert event["actor"].startswith("cli:") and event["account"] == person.uid


def test_issue_link_prints_it(runner, app, make_person, reset_flow):
    person = make_person()
    result = runner.invoke(args=["issue-link", person.uid, "--print", "--max-age", "600"])
    assert result.exit_code == 0
    link = result.output.strip()
    assert link.startswith("https://pwdrst.uni.example/pwdrst/reset/")
    assert reset_flow.set_password(link, client=app.test_client()).status_code == 303


@pytest.mark.parametrize(
    "identifier, expected",
    [
        ("nobody-at-all", "unknown"),
        ("t.lewandowski@uni.example", "ambiguous"),
        (sandbox.SAMPLE_PEOPLE[4].uid, "protected"),
    ],
)
def test_issue_link_refuses_with_a_reason(runner, smtp, identifier, expected, app):
    result = runner.invoke(args=["issue-link", identifier])
    assert result.exit_code != 0
    assert expected in result.output
    assert smtp.delivered(app) == []


def test_issue_link_refuses_a_max_age_over_the_cap(runner, make_person):
    person = make_person()
    result = runner.invoke(args=["issue-link", person.uid, "--max-age", str(30 * 86400)])
    assert result.exit_code != 0
    assert "CLI_LINK_MAX_AGE_CAP" in result.output


def write_csv(tmp_path, rows, header=True):
    path = tmp_path / "students.csv"
    lines = (["identifier"] if header else []) + rows
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_bulk_issue_reports_each_row(runner, smtp, tmp_path, make_person, audit):
    first, second, lonely = make_person(), make_person(), make_person(recovery=False)
    path = write_csv(
        tmp_path, [first.uid, second.mail[0], "nobody-at-all", "t.lewandowski@uni.example", lonely.uid, first.uid]
    )
    result = runner.invoke(args=["bulk-issue", path])
    assert result.exit_code == 0, result.output
    rows = report_rows(result.stdout)
    assert [(r["identifier"], r["outcome"]) for r in rows] == [
        (first.uid, "sent"),
        (second.mail[0], "sent"),
        ("nobody-at-all", "unknown"),
        ("t.lewandowski@uni.example", "ambiguous"),
        (lonely.uid, "no_recovery_address"),
        (first.uid, "duplicate"),
    ]
    assert "tlewandowski" in rows[3]["detail"]
    messages = smtp.wait_for(2)
    assert {m["X-Envelope-To"] for m in messages} == {first.recovery[0], second.recovery[0]}
    assert len(audit("cli_link")) == 5


def test_bulk_issue_dry_run_sends_nothing(runner, smtp, tmp_path, make_person, app):
    person = make_person()
    path = write_csv(tmp_path, [person.uid, "nobody-at-all"], header=False)
    result = runner.invoke(args=["bulk-issue", path, "--dry-run"])
    rows = report_rows(result.stdout)
    assert [r["outcome"] for r in rows] == ["would_send", "unknown"]
    assert smtp.delivered(app) == []


def test_bulk_issue_writes_the_report_to_a_file(runner, smtp, tmp_path, make_person):
    person = make_person()
    path = write_csv(tmp_path, [person.uid])
    report = tmp_path / "report.csv"
    result = runner.invoke(args=["bulk-issue", path, "--report", str(report), "--max-age", str(3 * 86400)])
    assert result.exit_code == 0
    assert report_rows(report.read_text(encoding="utf-8"))[0]["outcome"] == "sent"
    assert "w ciągu 72 godzin" in smtp.text(smtp.wait_for(1)[0])


def test_bulk_issue_writes_its_report_even_when_mail_cannot_be_delivered(make_app, smtp, tmp_path, make_person):
    runner = make_app(MAIL_RETRY_DELAYS=[0.1]).test_cli_runner()
    person = make_person()
    path = write_csv(tmp_path, [person.uid, "nobody-at-all"])
    report = tmp_path / "report.csv"
    smtp.stop()
    result = runner.invoke(args=["bulk-issue", path, "--report", str(report)])
    assert result.exit_code != 0 and "could not be delivered" in result.output
    rows = report_rows(report.read_text(encoding="utf-8"))
    assert [(r["identifier"], r["outcome"]) for r in rows] == [(person.uid, "sent"), ("nobody-at-all", "unknown")]


def test_bulk_issue_reports_the_rows_done_before_a_process_failed(make_app, smtp, tmp_path, make_person, monkeypatch):
    runner = make_app().test_cli_runner()
    people = [make_person() for _ in range(3)]
    real = cli.report_row

    def breaks_on_the_last(identifier, *args):
        if identifier == people[-1].uid:
            raise RuntimeError("a bug in one row")
        return real(identifier, *args)

    monkeypatch.setattr(cli, "report_row", breaks_on_the_last)  # inherited by the forked process
    report = tmp_path / "report.csv"
    path = write_csv(tmp_path, [p.uid for p in people])
    result = runner.invoke(args=["bulk-issue", path, "--jobs", "2", "--report", str(report)])
    assert result.exit_code != 0 and "a bug in one row" in result.output
    assert "stopped after" in result.output
    rows = report_rows(report.read_text(encoding="utf-8"))
    assert people[-1].uid not in [r["identifier"] for r in rows]
    assert all(r["outcome"] == "sent" for r in rows)


def test_bulk_issue_skips_protected_accounts(app, runner, smtp, tmp_path):
    path = write_csv(tmp_path, [sandbox.SAMPLE_PEOPLE[4].uid])
    rows = report_rows(runner.invoke(args=["bulk-issue", path]).stdout)
    assert rows[0]["outcome"] == "protected"
    assert smtp.delivered(app) == []


def test_bulk_issue_in_processes_reports_every_row_in_file_order(make_app, smtp, tmp_path, make_person):
    audit_log = tmp_path / "audit.jsonl"
    runner = make_app(AUDIT_LOG=str(audit_log)).test_cli_runner()
    people = [make_person() for _ in range(5)]
    lonely = make_person(recovery=False)
    identifiers = [p.uid for p in people[:3]] + ["nobody-at-all", people[0].mail[0].upper(), lonely.uid]
    identifiers += [p.mail[1] for p in people[3:]]
    path = write_csv(tmp_path, identifiers)
    result = runner.invoke(args=["bulk-issue", path, "--jobs", "3"])
    assert result.exit_code == 0, result.output
    rows = report_rows(result.stdout)
    assert [(r["identifier"], r["outcome"]) for r in rows] == list(
        zip(identifiers, ["sent"] * 3 + ["unknown", "sent", "no_recovery_address"] + ["sent"] * 2, strict=True)
    )
    messages = smtp.wait_for(6)
    assert sorted(m["X-Envelope-To"] for m in messages) == sorted(p.recovery[0] for p in people + [people[0]])
    # The processes write the audit log too: one line per row issued, none lost.
    events = [json.loads(line) for line in audit_log.read_text(encoding="utf-8").splitlines()]
    assert sorted(e["outcome"] for e in events if e["event"] == "cli_link") == sorted(r["outcome"] for r in rows)


def test_bulk_issue_in_processes_ends_with_an_error_when_one_fails(make_app, smtp, tmp_path, make_person, monkeypatch):
    runner = make_app().test_cli_runner()

    def broken(*args):
        raise RuntimeError("a bug in one row")

    monkeypatch.setattr(cli, "report_row", broken)  # inherited by the forked processes
    path = write_csv(tmp_path, [make_person().uid, make_person().uid])
    result = runner.invoke(args=["bulk-issue", path, "--jobs", "2"])
    assert result.exit_code != 0
    assert "a bulk-issue process failed" in result.output and "a bug in one row" in result.output


@pytest.mark.parametrize(("rows", "jobs"), [(1, 1), (cli.PARALLEL_FROM_ROWS - 1, 1)])
def test_bulk_issue_runs_a_small_file_in_one_process(rows, jobs):
    assert cli.default_jobs(rows) == jobs


def test_bulk_issue_shares_a_large_file_over_the_cores(monkeypatch):
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    assert cli.default_jobs(cli.PARALLEL_FROM_ROWS) == 2
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 64)
    assert cli.default_jobs(10000) == 4
