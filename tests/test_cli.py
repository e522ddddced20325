"""Administrators' commands, through Flask's CLI runner against the real slapd and SMTP server."""

import csv
import io

import pytest

from pwdrst import sandbox


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


def test_bulk_issue_skips_protected_accounts(app, runner, smtp, tmp_path):
    path = write_csv(tmp_path, [sandbox.SAMPLE_PEOPLE[4].uid])
    rows = report_rows(runner.invoke(args=["bulk-issue", path]).stdout)
    assert rows[0]["outcome"] == "protected"
    assert smtp.delivered(app) == []
