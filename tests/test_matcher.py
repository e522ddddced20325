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
