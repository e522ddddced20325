"""The bounded zxcvbn matcher: the same matches as zxcvbn, at a bounded cost."""

import pytest
from zxcvbn import matching

from pwdrst import matcher


@pytest.mark.parametrize(
    "password",
    ["Zielony-parasol-nad-Wisłą-7", "P@ssw0rd1", "kowalskiwarszawa1985", "drowssap", "qwerty123", "İstanbulİ", "a"],
)
def test_trie_dictionary_match_finds_exactly_what_zxcvbn_finds(password):
    matcher.prepare()  # registers the Polish dictionaries
    dictionaries = {**matching.RANKED_DICTIONARIES, "user_inputs": matching.build_ranked_dict(["jan", "kowalski"])}
    ours = matcher._bounded_dictionary_match(password, dictionaries)
    theirs = matcher._zxcvbn_dictionary_match(password, dictionaries)
    assert ours == theirs
    assert password != "kowalskiwarszawa1985" or ours  # the case that has matches has them


def test_l33t_cap_changes_nothing_for_ordinary_substitutions():
    table = {"a": ["@", "4"], "o": ["0"], "s": ["$", "5"]}
    assert matcher._bounded_l33t_subs(table) == matcher._zxcvbn_enumerate_l33t_subs(table)


def is_zxcvbns_own(function, name):
    return function.__module__ == "zxcvbn.matching" and function.__qualname__ == name


def test_scoring_uses_the_bounded_matchers_and_then_gives_zxcvbn_back_its_own(monkeypatch):
    calls = []

    def spy(table):
        calls.append(table)
        return matcher._zxcvbn_enumerate_l33t_subs(table)

    monkeypatch.setattr(matcher, "_bounded_l33t_subs", spy)
    result = matcher.score("P@ssw0rd-Kowalski-1985", ["jan", "kowalski"])
    assert calls and result["score"] in range(5)
    assert is_zxcvbns_own(matching.enumerate_l33t_subs, "enumerate_l33t_subs")
    assert is_zxcvbns_own(matching.dictionary_match, "dictionary_match")


def test_zxcvbn_gets_its_own_matchers_back_even_when_scoring_fails():
    with pytest.raises(RuntimeError), matcher.bounded():
        assert matching.enumerate_l33t_subs is matcher._bounded_l33t_subs
        assert matching.dictionary_match is matcher._bounded_dictionary_match
        raise RuntimeError("zxcvbn failed")
    assert is_zxcvbns_own(matching.enumerate_l33t_subs, "enumerate_l33t_subs")
    assert is_zxcvbns_own(matching.dictionary_match, "dictionary_match")
    assert not matcher._lock.locked()
