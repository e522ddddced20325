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


def is_zxcvbns_own_search(function):
    return function.__module__ == "zxcvbn.scoring" and function.__qualname__ == "most_guessable_match_sequence"


def test_the_search_is_given_back_to_both_of_zxcvbns_modules():
    from zxcvbn import scoring

    with matcher.bounded():
        assert scoring.most_guessable_match_sequence is matcher._pruned_sequence
        assert matching.most_guessable_match_sequence is matcher._pruned_sequence  # repeat_match's import
    assert is_zxcvbns_own_search(scoring.most_guessable_match_sequence)
    assert is_zxcvbns_own_search(matching.most_guessable_match_sequence)


def test_the_word_index_is_mapped_and_finds_what_every_dictionary_finds():
    matcher.prepare()
    assert matcher._word_index is not None  # built once per machine, then mapped
    index = matcher._word_index[1]
    assert "kraków" in index and "password" in index and "kowalska" in index


@pytest.mark.parametrize("password", ["Kraków-Wisła-2024", "passwordkowalska", "zielonyparasol"])
def test_without_the_word_index_the_matches_are_the_same(monkeypatch, password):
    matcher.prepare()
    dictionaries = {**matching.RANKED_DICTIONARIES, "user_inputs": matching.build_ranked_dict(["jan"])}
    with_index = matcher._bounded_dictionary_match(password, dictionaries)
    monkeypatch.setattr(matcher, "_word_index", None)
    without = matcher._bounded_dictionary_match(password, dictionaries)
    assert with_index == without == matcher._zxcvbn_dictionary_match(password, dictionaries)
    assert with_index


def test_a_word_index_folder_open_to_others_is_never_read(monkeypatch, tmp_path, caplog):
    import os

    monkeypatch.setattr(matcher.tempfile, "gettempdir", lambda: str(tmp_path))
    folder = tmp_path / f"pwdrst-{os.getuid()}"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)  # somebody else could have planted an index here
    (folder / "planted").write_text("x")
    assert matcher._load_word_index(matching.RANKED_DICTIONARIES) is None
    assert "word index unavailable" in caplog.text
    assert sorted(p.name for p in folder.iterdir()) == ["planted"]  # nothing built, nothing read


def test_the_word_index_is_built_in_a_private_folder_when_missing(monkeypatch, tmp_path):
    import os
    import stat

    matcher.prepare()
    monkeypatch.setattr(matcher.tempfile, "gettempdir", lambda: str(tmp_path))
    index = matcher._load_word_index(matching.RANKED_DICTIONARIES)
    folder = tmp_path / f"pwdrst-{os.getuid()}"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    [built] = folder.iterdir()
    assert built.name.startswith("zxcvbn-words-") and built.name.endswith(".marisa")
    assert "warszawa" in index and "monkey" in index and "qwxzvk" not in index


@pytest.mark.parametrize(
    "password", ["abababababababababababab", "19841984198419841984", "passwordpassword1", "4@8({[<3&6"]
)
def test_the_search_sees_one_match_per_span_and_finds_zxcvbns_answer(monkeypatch, password):
    from zxcvbn import zxcvbn

    matcher.prepare()
    seen = []
    search = matcher._zxcvbn_most_guessable

    def spy(password, matches, _exclude_additive=False):
        seen.append([(m["i"], m["j"]) for m in matches])
        return search(password, matches, _exclude_additive)

    monkeypatch.setattr(matcher, "_zxcvbn_most_guessable", spy)
    ours = matcher.score(password, ["jan"])
    theirs = zxcvbn(password, user_inputs=["jan"])
    assert (ours["guesses"], ours["score"]) == (theirs["guesses"], theirs["score"])
    assert seen and all(len(spans) == len(set(spans)) for spans in seen)


def test_a_crafted_l33t_table_is_never_enumerated_whole(monkeypatch):
    table = matching.relevant_l33t_subtable("4@8({[<3&6#!|1i7+0$5%2", matching.L33T_TABLE)
    sizes = []
    enumerate_subs = matcher._zxcvbn_enumerate_l33t_subs

    def spy(part):
        sizes.append(len(part))
        return enumerate_subs(part)

    monkeypatch.setattr(matcher, "_zxcvbn_enumerate_l33t_subs", spy)
    subs = matcher._bounded_l33t_subs(table)
    assert 0 < len(subs) <= matcher.L33T_SUBS
    assert sizes and max(sizes) < len(table)  # only small parts of it were ever expanded


@pytest.mark.parametrize(
    "table",
    [{"a": ["@", "4"]}, {"a": ["@", "4"], "o": ["0"], "s": ["$", "5"]}, {"i": ["1", "!", "|"], "l": ["1", "|", "7"]}],
)
def test_the_l33t_bound_is_never_below_the_count(table):
    assert matcher._most_l33t_subs(table) >= len(matcher._zxcvbn_enumerate_l33t_subs(table))
