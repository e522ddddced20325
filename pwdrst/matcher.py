"""zxcvbn with a bounded cost: the only module that imports zxcvbn, zxcvbn-pl and marisa-trie.

Unbounded zxcvbn takes seconds on crafted input (about 1.4 s for 64 l33t characters, see the
README), because of two functions of zxcvbn.matching:

- `enumerate_l33t_subs` lists every combination of the l33t substitutions a password allows; here
  it stops at L33T_SUBS tables, adding letters in order of how often they occur, so an ordinary
  password (a few l33t characters) gets exactly zxcvbn's tables;
- `dictionary_match` tries every substring against every dictionary (quadratic in the length, and
  run again for each l33t table); here one trie over zxcvbn's own dictionaries, zxcvbn-pl's tries and
  a small trie of the user inputs each list the words starting at a position in one call.

On top of that, zxcvbn sees at most WINDOW characters: for longer input, the first and the last
WINDOW, keeping the higher score (a substring's guesses never exceed the whole string's, so this
never accepts what full zxcvbn would refuse). benchmarks/policy.py measures the worst case (under
20 ms) and the agreement with full zxcvbn (100% of 3,000 ordinary passwords); tests/test_matcher.py
proves that the bounded dictionary match finds exactly zxcvbn's matches, in zxcvbn's order.

zxcvbn has no hook for either function, so bounded() puts the two replacements into zxcvbn.matching
for the duration of one scoring call and puts zxcvbn's own back afterwards: importing this module
patches nothing, and zxcvbn called outside score() is plain zxcvbn.

Thread safety: zxcvbn keeps the user inputs in module-level state (matching.RANKED_DICTIONARIES),
and bounded() swaps module attributes, so scoring is serialised with a lock. The GIL serialises this
CPU-bound work anyway, so the lock costs no throughput.
"""

import threading
from contextlib import contextmanager

import marisa_trie
import zxcvbn_pl
from zxcvbn import matching as zxcvbn_matching
from zxcvbn import zxcvbn

WINDOW = 40
L33T_SUBS = 8

# The names under which zxcvbn reports a match in a Polish dictionary.
POLISH_DICTIONARIES = frozenset(zxcvbn_pl.DICTIONARY_NAMES)

_lock = threading.Lock()
_current_password = threading.local()
_zxcvbn_enumerate_l33t_subs = zxcvbn_matching.enumerate_l33t_subs
_zxcvbn_dictionary_match = zxcvbn_matching.dictionary_match
_union_index: dict[tuple, object] = {}
_prepared = False


def _bounded_l33t_subs(table):
    """Enumerate l33t substitutions like zxcvbn, but never more than L33T_SUBS tables."""
    subs = _zxcvbn_enumerate_l33t_subs(table)
    if len(subs) <= L33T_SUBS:
        return subs
    password = getattr(_current_password, "value", "")
    keys = sorted(table, key=lambda letter: -sum(password.count(c) for c in table[letter]))
    chosen: dict = {}
    subs = [{}]
    for letter in keys:
        trial = _zxcvbn_enumerate_l33t_subs({**chosen, letter: table[letter]})
        if len(trial) > L33T_SUBS:
            break
        chosen[letter] = table[letter]
        subs = trial
    return subs


def _plain(dictionaries: dict) -> dict:
    """Return the dictionaries that are plain dicts (zxcvbn's own), without the user inputs."""
    return {n: d for n, d in dictionaries.items() if n != "user_inputs" and not hasattr(d, "_trie")}


def _union_of(dictionaries: dict):
    """Return one trie over the words of all the plain dictionaries (built once per set of them)."""
    key = tuple((name, id(ranked)) for name, ranked in dictionaries.items())
    if key not in _union_index:
        _union_index.clear()
        _union_index[key] = marisa_trie.Trie({word for ranked in dictionaries.values() for word in ranked})
    return _union_index[key]


def _bounded_dictionary_match(password, _ranked_dictionaries=zxcvbn_matching.RANKED_DICTIONARIES):
    """zxcvbn's dictionary_match, asking tries for the words that start at each position.

    zxcvbn tries every substring against every dictionary (quadratic in the length). Here one trie
    over zxcvbn's own (plain) dictionaries, zxcvbn-pl's tries and a small trie of the user inputs
    each list the words at position i in one call. The matches, and their order, are exactly zxcvbn's.
    """
    order = {name: n for n, name in enumerate(_ranked_dictionaries)}
    plain = _plain(_ranked_dictionaries)
    tries = [(_union_of(plain), list(plain.items()))]
    tries += [(d._trie, [(n, d)]) for n, d in _ranked_dictionaries.items() if hasattr(d, "_trie")]
    if "user_inputs" in _ranked_dictionaries:  # rebuilt at every call: a trie of its few words
        inputs = _ranked_dictionaries["user_inputs"]
        tries.append((marisa_trie.Trie(list(inputs)), [("user_inputs", inputs)]))
    matches = []
    length = len(password)
    password_lower = password.lower()
    for index, members in tries:
        for i in range(length):
            for word in index.prefixes(password_lower[i:length]):
                j = i + len(word) - 1
                for name, ranked in members:
                    if word in ranked:
                        matches.append(
                            {
                                "pattern": "dictionary",
                                "i": i,
                                "j": j,
                                "token": password[i : j + 1],
                                "matched_word": word,
                                "rank": ranked[word],
                                "dictionary_name": name,
                                "reversed": False,
                                "l33t": False,
                            }
                        )
    return sorted(matches, key=lambda m: (m["i"], m["j"], order[m["dictionary_name"]]))


def prepare() -> None:
    """Register the Polish dictionaries with zxcvbn and build the union trie (once).

    Policy's constructor calls this, so that the union trie (about 40 ms) is built at start-up, not
    in somebody's first request. zxcvbn_pl.register() adds its dictionaries to zxcvbn's module-level
    ones for the whole process, as zxcvbn-pl documents; the matchers are replaced only by bounded().
    """
    global _prepared
    with _lock:
        if _prepared:
            return
        zxcvbn_pl.register()  # Polish common words, first names, surnames and places
        _union_of(_plain(zxcvbn_matching.RANKED_DICTIONARIES))
        _prepared = True


@contextmanager
def bounded():
    """Hold the lock and put the bounded matchers in zxcvbn.matching for the block, then restore.

    zxcvbn looks both functions up in its module at every call, so replacing them there is the only
    way in; doing it for the block alone leaves zxcvbn itself untouched for any other caller.
    """
    with _lock:
        saved = zxcvbn_matching.enumerate_l33t_subs, zxcvbn_matching.dictionary_match
        zxcvbn_matching.enumerate_l33t_subs = _bounded_l33t_subs
        zxcvbn_matching.dictionary_match = _bounded_dictionary_match
        try:
            yield
        finally:
            zxcvbn_matching.enumerate_l33t_subs, zxcvbn_matching.dictionary_match = saved


def score(password: str, user_inputs: list[str]) -> dict:
    """Return zxcvbn's result for password, or for its better window when it is longer than WINDOW."""
    prepare()
    windows = [password] if len(password) <= WINDOW else [password[:WINDOW], password[-WINDOW:]]
    best = None
    with bounded():
        for window in windows:
            _current_password.value = window
            result = zxcvbn(window, user_inputs=user_inputs)
            if best is None or result["score"] > best["score"]:
                best = result
    return best
