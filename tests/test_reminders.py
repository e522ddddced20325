"""Password-expiry reminders (`flask notify-expiring`) against the real slapd and SMTP server."""

import csv
import io
import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest

from pwdrst import reminders

DAY = 86400
MAX_AGE_DAYS = 90
PUBLIC_URL = "https://pwdrst.uni.example/pwdrst"
URL_RE = re.compile(r"(?:https?|ftp|mailto):[^\s<>\"]+")

_names = itertools.count(1)


@pytest.fixture
def config_overrides(tmp_path):
    return {"REMINDER_STATE_DIR": str(tmp_path)}


@pytest.fixture
def policies(slapd):
    """A policy whose passwords live MAX_AGE_DAYS, and one whose passwords never expire."""
    n = next(_names)
    expiring = slapd.add_policy(f"reminders-{n}", pwdMaxAge=MAX_AGE_DAYS * DAY)
    never = slapd.add_policy(f"reminders-never-{n}", pwdMinLength=8)
    return expiring, never


@pytest.fixture
def person_at(make_person, slapd, policies):
    """Return person_at(days_left): a person whose password expires in that many days (None: never)."""

    def make(days_left: float | None, **kwargs):
        person = make_person(**kwargs)
        expiring, never = policies
        age = timedelta(days=MAX_AGE_DAYS - (days_left if days_left is not None else 80))
        changed = (datetime.now(UTC) - age).strftime("%Y%m%d%H%M%SZ")
        slapd.expire_password(person.dn, expiring if days_left is not None else never, changed=changed)
        return person

    return make


def rows_of(output: str, people) -> dict[str, tuple[int, str]]:
    """Return {login: (days_left, outcome)} of the report's rows for these people."""
    logins = {p.uid for p in people}
    return {
        r["login"]: (int(r["days_left"]), r["outcome"])
        for r in csv.DictReader(io.StringIO(output))
        if r["login"] in logins
    }


def mails_to(messages, people) -> dict[str, int]:
    """Return {login: number of mails} that reached any address of these people."""
    counts = {}
    for person in people:
        addresses = set(person.mail) | set(person.recovery)
        found = [m for m in messages if set(m["X-Envelope-To"].split(", ")) & addresses]
        if found:
            counts[person.uid] = len(found)
    return counts


def test_each_person_gets_the_reminder_now_due(app, runner, smtp, person_at, make_person, audit):
    at_14, at_7, at_1 = person_at(12.5), person_at(6.5), person_at(0.5)
    expired, far, never = person_at(-10), person_at(60), person_at(None)
    default = make_person()  # under the default policy, which sets no pwdMaxAge
    everyone = [at_14, at_7, at_1, expired, far, never, default]
    result = runner.invoke(args=["notify-expiring", "--days", "14,7,1"])
    assert result.exit_code == 0, result.output
    assert rows_of(result.stdout, everyone) == {
        at_14.uid: (13, "sent"),
        at_7.uid: (7, "sent"),
        at_1.uid: (1, "sent"),
        expired.uid: (-10, "expired"),
        far.uid: (60, "not_due"),
    }
    assert mails_to(smtp.delivered(app), everyone) == {at_14.uid: 1, at_7.uid: 1, at_1.uid: 1}
    sent = {e["account"]: e for e in audit("expiry_reminder")}
    assert {at_14.uid, at_7.uid, at_1.uid} <= set(sent)
    assert sent[at_7.uid]["actor"].startswith("cli:") and sent[at_7.uid]["days"] == 7
    assert "Checking" in result.stderr and "sent" in result.stderr


def test_a_second_run_sends_nothing_new(app, runner, smtp, person_at):
    people = [person_at(12.5), person_at(0.5)]
    assert runner.invoke(args=["notify-expiring"]).exit_code == 0
    assert mails_to(smtp.delivered(app), people) == {p.uid: 1 for p in people}
    smtp.clear()
    again = runner.invoke(args=["notify-expiring"])
    assert again.exit_code == 0, again.output
    assert {outcome for _, outcome in rows_of(again.stdout, people).values()} == {"already_sent"}
    assert mails_to(smtp.delivered(app), people) == {}


def test_the_next_threshold_goes_when_it_comes_due_and_a_missed_day_skips_the_passed_ones(
    app, runner, smtp, person_at, monkeypatch
):
    soon, late = person_at(13.5), person_at(5.5)  # `late`'s 14-day reminder fell on a missed run
    start = datetime.now(UTC)
    assert runner.invoke(args=["notify-expiring"]).exit_code == 0
    first = smtp.delivered(app)
    assert mails_to(first, [soon, late]) == {soon.uid: 1, late.uid: 1}
    # Later the same day: nothing new. Five days on, `late` is due its 1-day one; seven, `soon` its 7-day one.
    monkeypatch.setattr(reminders, "now", lambda: start + timedelta(hours=12))
    assert rows_of(runner.invoke(args=["notify-expiring"]).stdout, [soon, late]) == {
        soon.uid: (13, "already_sent"),
        late.uid: (5, "already_sent"),
    }
    monkeypatch.setattr(reminders, "now", lambda: start + timedelta(days=5))
    rows = rows_of(runner.invoke(args=["notify-expiring"]).stdout, [soon, late])
    assert rows == {soon.uid: (9, "already_sent"), late.uid: (1, "sent")}
    monkeypatch.setattr(reminders, "now", lambda: start + timedelta(days=7))
    rows = rows_of(runner.invoke(args=["notify-expiring"]).stdout, [soon, late])
    assert rows == {soon.uid: (7, "sent"), late.uid: (-1, "expired")}
    assert mails_to(smtp.delivered(app), [soon, late]) == {soon.uid: 2, late.uid: 2}


def test_a_reminder_that_could_not_be_delivered_is_not_recorded_and_goes_at_the_next_run(
    app, runner, smtp, person_at, audit
):
    person = person_at(6.5)
    smtp.stop()
    failed = runner.invoke(args=["notify-expiring"])
    assert failed.exit_code != 0 and "could not be delivered" in failed.output
    assert rows_of(failed.stdout, [person])[person.uid][1] == "mail_failed"
    assert [e["outcome"] for e in audit("expiry_reminder") if e["account"] == person.uid] == ["mail_failed"]
    smtp.start()
    again = runner.invoke(args=["notify-expiring"])
    assert again.exit_code == 0, again.output
    assert rows_of(again.stdout, [person])[person.uid][1] == "sent"
    assert mails_to(smtp.delivered(app), [person]) == {person.uid: 1}


def test_dry_run_sends_and_records_nothing(app, runner, smtp, person_at, tmp_path):
    person = person_at(6.5)
    result = runner.invoke(args=["notify-expiring", "--dry-run"])
    assert rows_of(result.stdout, [person]) == {person.uid: (7, "would_send")}
    assert mails_to(smtp.delivered(app), [person]) == {}
    result = runner.invoke(args=["notify-expiring"])
    assert rows_of(result.stdout, [person]) == {person.uid: (7, "sent")}


def test_the_report_goes_to_a_file(app, runner, smtp, person_at, tmp_path):
    person = person_at(0.5)
    report = tmp_path / "report.csv"
    result = runner.invoke(args=["notify-expiring", "--report", str(report)])
    assert result.exit_code == 0
    assert "login,days_left,outcome" not in result.stdout
    assert rows_of(report.read_text(encoding="utf-8"), [person]) == {person.uid: (1, "sent")}


def test_the_mail_names_the_change_page_as_text_and_carries_no_link(app, runner, smtp, person_at):
    person = person_at(6.5)
    assert runner.invoke(args=["notify-expiring"]).exit_code == 0
    [message] = [m for m in smtp.delivered(app) if person.mail[0] in m["X-Envelope-To"]]
    text, html = smtp.text(message), smtp.html(message)
    assert URL_RE.findall(text) == [PUBLIC_URL + "/password"]
    assert URL_RE.findall(html) == [PUBLIC_URL + "/password"]
    assert "<a" not in html.lower() and "href" not in html.lower()
    assert "wygasa za 7 dni" in text  # in the default language, Polish
    assert set(message["X-Envelope-To"].split(", ")) == set(person.mail) | set(person.recovery)


def test_the_record_is_kept_in_redis_when_limits_are(make_app, smtp, person_at, redis_server, tmp_path):
    _, uri = redis_server
    app = make_app(RATELIMIT_STORAGE_URI=uri, REMINDER_STATE_DIR=str(tmp_path / "unused"))
    runner = app.test_cli_runner()
    person = person_at(0.5)
    first = runner.invoke(args=["notify-expiring"])
    assert first.exit_code == 0, first.output
    assert rows_of(first.stdout, [person]) == {person.uid: (1, "sent")}
    # Another app server, the same Redis: it knows the reminder went.
    other = make_app(RATELIMIT_STORAGE_URI=uri, REMINDER_STATE_DIR=str(tmp_path / "unused"))
    second = other.test_cli_runner().invoke(args=["notify-expiring"])
    assert rows_of(second.stdout, [person]) == {person.uid: (1, "already_sent")}
    assert not (tmp_path / "unused").exists()
    assert "Redis" in second.stderr


def test_bad_days_are_refused(runner):
    result = runner.invoke(args=["notify-expiring", "--days", "7,0"])
    assert result.exit_code != 0 and "--days" in result.output


def test_one_paged_search_finds_everyone(app, person_at):
    person_at(3)
    from pwdrst.directory import directory

    with app.app_context():
        paged = directory.password_ages(page_size=2)
        whole = directory.password_ages(page_size=1000)
    assert len(paged) == len(whole) > 2
    assert {a.login for a, _ in paged} == {a.login for a, _ in whole}


def test_check_config_says_the_maximum_age(make_app, smtp, policies):
    expiring, never = policies
    result = make_app(LDAP_PASSWORD_POLICY_DN=expiring).test_cli_runner().invoke(args=["check-config"])
    assert result.exit_code == 0, result.output
    assert f"reminders: ok (passwords expire 90 days after a change: pwdMaxAge of {expiring}" in result.output


def test_check_config_says_plainly_when_passwords_never_expire(make_app, smtp, policies):
    _, never = policies
    result = make_app(LDAP_PASSWORD_POLICY_DN=never).test_cli_runner().invoke(args=["check-config"])
    assert result.exit_code == 0, result.output
    assert "passwords never expire, so notify-expiring mails nobody" in result.output


def test_check_config_says_when_the_policy_cannot_be_read(make_app, smtp):
    missing = "cn=no-such-policy,ou=policies,dc=uni,dc=example"
    result = make_app(LDAP_PASSWORD_POLICY_DN=missing).test_cli_runner().invoke(args=["check-config"])
    assert f"reminders: the pwdMaxAge of {missing} cannot be read" in result.output
