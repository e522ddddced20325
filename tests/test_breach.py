"""Breached passwords: the filter built from a generated list, refused on the form and the meter alike."""

import hashlib
import io
import struct

import pytest
from flask_babel import force_locale

from pwdrst import breach
from pwdrst.policy import Policy

# Passwords the policy would accept, but which the generated list says were breached.
# The suite's usual new password (the new_password fixture's) is among the listed ones.
NEW_PASSWORD = "Nowe-haslo-z-lasu-nad-rzeka-44"
LISTED = [NEW_PASSWORD, "Zielony-parasol-nad-Wisłą-7", "jkowalski1"] + [f"wyciek-{n}-hasło" for n in range(20_000)]
UNLISTED = "Inne-haslo-z-gor-nad-jeziorem-91"


def hibp_line(password: str, count: int, lower: bool = False) -> str:
    """Return a line of Have I Been Pwned's SHA-1 list: upper-case hex, a colon, the count, CRLF."""
    digest = hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest()
    return f"{digest if lower else digest.upper()}:{count}\r\n"


def hashes_text(passwords, count=3) -> bytes:
    """Return a list in the documented format, with lower-case, blank and malformed lines mixed in."""
    lines = [hibp_line(p, count, lower=n % 1000 == 7) for n, p in enumerate(passwords)]
    lines[100:100] = [
        "not a hash at all\n",
        "\n",
        "ABCDEF:12\n",
        hibp_line("too-long", 1).replace(":", "0:"),
        hibp_line("bad-count", 1).replace(":1", ":many"),
        "G" * 40 + ":1\n",
    ]
    return "".join(lines).encode() + b"\xff\xfe binary rubbish\n" + b"x" * 100_000 + b"\n"


@pytest.fixture(scope="module")
def breach_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("breach") / "breach.filter"
    report = breach.build(io.BytesIO(hashes_text(LISTED)), str(path))
    assert report.entries == len(LISTED)
    return path


@pytest.fixture
def config_overrides(breach_file):
    return {"POLICY_BREACH_FILTER": str(breach_file)}


def test_build_counts_lowercase_and_malformed_lines_and_keeps_going(tmp_path):
    report = breach.build(io.BytesIO(hashes_text(LISTED[:5000])), str(tmp_path / "f"))
    assert report.entries == 5000
    assert report.lowercase == 5  # lines 7, 1007, ...: kept, the same hash in other letters
    assert report.malformed == 7
    assert report.malformed_lines[0] == 101
    assert report.below_min_count == 0
    assert "5,000 entries" in report.summary() and "0.0015%" in report.summary()


def test_listed_passwords_are_refused_and_others_accepted(breach_file):
    policy = Policy(breach_filter=str(breach_file))
    assert all("breached" in policy.check(p).codes for p in LISTED[3:2000])
    verdict = policy.check(LISTED[1])
    assert verdict.codes == ("breached",)  # strong otherwise: only this sentence
    assert policy.check(LISTED[1].upper()).ok  # the list holds exact passwords
    assert policy.check(UNLISTED).ok


def test_false_positive_rate_stays_within_its_bound_over_100000_unlisted_passwords(breach_file):
    filter_ = breach.BreachFilter(str(breach_file))
    assert all(p in filter_ for p in LISTED)  # never a false negative
    false_positives = sum(f"niewyciekłe-{n}" in filter_ for n in range(100_000))
    # Expected 100,000 / 65,536 = 1.5; above 12 happens by chance less than once in 10^7 builds.
    assert false_positives <= 12


def test_the_mapped_filter_answers_like_the_library_s_own_copy(breach_file):
    filter_ = breach.BreachFilter(str(breach_file))
    keys = [int.from_bytes(breach.password_digest(p)[:8], "big") for p in LISTED[:3000]]
    for number, (offset, _, _) in enumerate(filter_.info.table[:16]):
        copy = breach.ffi.new("binary_fuse16_t *")
        assert breach.lib.binary_fuse16_deserialize(copy, filter_._base + offset)
        try:
            answers = [breach.lib.binary_fuse16_contain(k, copy) for k in keys]
            assert answers == [breach.lib.binary_fuse16_contain(k, filter_._filters[number]) for k in keys]
            assert sum(answers) >= 3000 // 256 // 2
        finally:
            breach.lib.binary_fuse16_free(copy)


def test_without_a_filter_nothing_is_called_breached():
    assert "breached" not in Policy(breach_filter=None).check("jkowalski1").codes


def test_breached_comes_with_the_others_at_once(breach_file):
    from pwdrst import sandbox

    jan = sandbox.account_of(sandbox.SAMPLE_PEOPLE[0])
    verdict = Policy(breach_filter=str(breach_file)).check("jkowalski1", jan, current="jkowalski1")
    assert set(verdict.codes) >= {"too_short", "same_as_current", "contains_login", "breached", "weak"}


@pytest.mark.parametrize(
    "language, expected",
    [
        ("pl", "To hasło pojawiło się w wyciekach danych"),
        ("en", "This password has appeared in data breaches"),
    ],
)
def test_breached_has_its_own_sentence_in_both_languages(app, language, expected):
    with app.test_request_context(), force_locale(language):
        verdict = Policy(breach_filter=app.config["POLICY_BREACH_FILTER"]).check(LISTED[1])
        assert verdict.problems[0].message.startswith(expected)


def test_min_count_keeps_only_hashes_seen_often_enough(tmp_path):
    text = "".join(hibp_line(f"rare-{n}", 1) for n in range(500)) + "".join(
        hibp_line(f"common-{n}", 50) for n in range(500)
    )
    path = tmp_path / "f"
    report = breach.build(io.BytesIO(text.encode()), str(path), min_count=10)
    assert (report.entries, report.below_min_count) == (500, 500)
    filter_ = breach.BreachFilter(str(path))
    assert all(f"common-{n}" in filter_ for n in range(500))
    assert sum(f"rare-{n}" in filter_ for n in range(500)) <= 2


# -- the command


def test_build_command_reads_standard_input_and_reports(runner, tmp_path):
    out = tmp_path / "from-stdin.filter"
    result = runner.invoke(args=["build-breach-filter", "-", "--out", str(out)], input=hashes_text(LISTED[:3000]))
    assert result.exit_code == 0, result.output
    assert "3 in lower case (kept), 7 malformed (skipped, lines 101" in result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert "3,000 entries" in last and "bytes" in last and "bits per entry" in last and "0.0015%" in last
    assert "peak memory" in result.stderr
    assert breach.inspect(str(out)).entries == 3000


def test_build_command_reads_a_file_with_min_count(runner, tmp_path):
    hashes = tmp_path / "pwned-passwords-sha1-ordered-by-hash-v8.txt"
    hashes.write_bytes(b"".join(hibp_line(f"p{n}", n % 4 + 1).encode() for n in range(4000)))
    out = tmp_path / "breach.filter"
    result = runner.invoke(args=["build-breach-filter", str(hashes), "--out", str(out), "--min-count", "3"])
    assert result.exit_code == 0, result.output
    assert "2,000 seen fewer than 3 times" in result.stderr
    assert result.stdout.strip().endswith(" s") and "2,000 entries" in result.stdout


# -- the real flows: the reset form and the meter share the verdict


def test_reset_form_refuses_a_breached_password_and_takes_another(make_person, reset_flow, can_bind, new_password):
    assert new_password == NEW_PASSWORD
    person = make_person()
    link = reset_flow.link(person.uid)
    refused = reset_flow.set_password(link, NEW_PASSWORD)
    assert refused.status_code == 400
    assert "To hasło pojawiło się w wyciekach danych" in refused.get_data(as_text=True)
    assert not can_bind(person.dn, NEW_PASSWORD)
    accepted = reset_flow.set_password(link, UNLISTED)  # a refusal leaves the link usable
    assert accepted.status_code == 303
    assert can_bind(person.dn, UNLISTED)


def test_meter_says_breached_beside_the_other_problems(client, csrf_token):
    client.get("/lang/en")
    token = csrf_token(client.get("/reset"))

    def meter(password):
        response = client.post("/api/strength", json={"password": password}, headers={"X-CSRFToken": token})
        return response.get_json()

    body = meter(LISTED[1])
    assert body["ok"] is False
    assert [p["code"] for p in body["problems"]] == ["breached"]
    assert body["problems"][0]["message"].startswith("This password has appeared in data breaches")
    assert {"too_short", "breached"} <= {p["code"] for p in meter("jkowalski1")["problems"]}
    assert meter(UNLISTED)["ok"] is True


# -- settings and check-config


def test_check_config_describes_the_filter(flask_cli, breach_file):
    result = flask_cli("check-config", PWDRST_POLICY_BREACH_FILTER=str(breach_file))
    assert result.returncode == 0, result.stderr
    assert f"breach filter: ok ({breach_file}: {len(LISTED):,} entries" in result.stdout
    assert "bytes" in result.stdout and "0.0015%" in result.stdout


def damaged_copies(source, tmp_path):
    data = source.read_bytes()
    yield "not-a-filter", b"HASH:COUNT\n" * 10, "is not a pwdrst breach filter"
    yield "empty", b"", "is not a pwdrst breach filter"
    yield "truncated", data[: len(data) // 2], "truncated"
    version_two = data[:8] + struct.pack("<H", 2) + data[10:]
    yield "version-2", version_two, "this pwdrst reads version 1"
    counted = data[:16] + struct.pack("<Q", 5) + data[24:]
    yield "miscounted", counted, "do not add up"


def test_a_damaged_or_missing_filter_stops_start_up_naming_the_setting(flask_cli, breach_file, tmp_path):
    cases = list(damaged_copies(breach_file, tmp_path))
    cases.append(("missing", None, "cannot be read"))
    for name, data, expected in cases:
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(breach.FilterFileError, match=expected):
            breach.inspect(str(path))
    result = flask_cli("check-config", PWDRST_POLICY_BREACH_FILTER=str(tmp_path / "truncated"))
    assert result.returncode != 0
    assert "POLICY_BREACH_FILTER" in result.stderr and "truncated" in result.stderr
    assert "Traceback" not in result.stderr
