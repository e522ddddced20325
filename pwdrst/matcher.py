"""zxcvbn with a bounded cost: the only module that imports zxcvbn, zxcvbn-pl and marisa-trie.

Unbounded zxcvbn takes seconds on crafted input (about 1.4 s for 64 l33t characters, see the
README), because of functions of zxcvbn.matching and zxcvbn.scoring:

- `enumerate_l33t_subs` lists every combination of the l33t substitutions a password allows; here
  it stops at L33T_SUBS tables, adding letters in order of how often they occur, so an ordinary
  password (a few l33t characters) gets exactly zxcvbn's tables;
- `dictionary_match` tries every substring against every dictionary (quadratic in the length, and
  run again for each l33t table); here one trie of every word of every dictionary (zxcvbn's and
  zxcvbn-pl's, built once per machine in a child process and memory-mapped) and a small trie of the
  user inputs list the words starting at a position in one call each;
- `most_guessable_match_sequence` costs (matches x sequence lengths); here it is given only the
  cheapest match of each span, which a search for the fewest guesses would pick anyway.

On top of that, zxcvbn sees at most WINDOW characters: for longer input, the first and the last
WINDOW, keeping the higher score (a substring's guesses never exceed the whole string's, so this
never accepts what full zxcvbn would refuse). benchmarks/policy.py measures the worst case and the
agreement with full zxcvbn (100% of 3,000 ordinary passwords); tests/test_matcher.py proves that the
bounded dictionary match finds exactly zxcvbn's matches, in zxcvbn's order.

zxcvbn has no hook for these functions, so bounded() puts the replacements into zxcvbn's modules
for the duration of one scoring call and puts zxcvbn's own back afterwards: importing this module
patches nothing, and zxcvbn called outside score() is plain zxcvbn.

Thread safety: zxcvbn keeps the user inputs in module-level state (matching.RANKED_DICTIONARIES),
and bounded() swaps module attributes, so scoring is serialised with a lock. The GIL serialises this
CPU-bound work anyway, so the lock costs no throughput.
"""

import hashlib
import logging
import os
import stat
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from importlib import metadata

import marisa_trie
import zxcvbn_pl
from zxcvbn import matching as zxcvbn_matching
from zxcvbn import scoring as zxcvbn_scoring
from zxcvbn import zxcvbn

WINDOW = 32
L33T_SUBS = 8

# The names under which zxcvbn reports a match in a Polish dictionary.
POLISH_DICTIONARIES = frozenset(zxcvbn_pl.DICTIONARY_NAMES)

_lock = threading.Lock()
_current_password = threading.local()
_zxcvbn_enumerate_l33t_subs = zxcvbn_matching.enumerate_l33t_subs
_zxcvbn_dictionary_match = zxcvbn_matching.dictionary_match
_zxcvbn_most_guessable = zxcvbn_scoring.most_guessable_match_sequence
_union_index: dict[tuple, object] = {}
_user_index: dict[tuple, object] = {}
_word_index = None  # one trie over every word of every dictionary, or None (see _load_word_index)
_prepared = False
log = logging.getLogger(__name__)


def _most_l33t_subs(table) -> int:
    """Return an upper bound of how many tables zxcvbn enumerates for table, without enumerating.

    Each table maps some of the l33t characters to one of the letters they may stand for, so there
    are at most the product, over the characters, of (letters it may stand for + 1).
    """
    letters_per_character: dict[str, int] = {}
    for characters in table.values():
        for character in characters:
            letters_per_character[character] = letters_per_character.get(character, 0) + 1
    bound = 1
    for count in letters_per_character.values():
        bound *= count + 1
    return bound


def _bounded_l33t_subs(table):
    """Enumerate l33t substitutions like zxcvbn, but never more than L33T_SUBS tables.

    zxcvbn's own enumeration is exponential in the distinct l33t characters (seconds for a password
    made of them), so it is called whole only when the bound says the result is small; otherwise the
    letters are added in order of how often their characters occur while the tables stay few.
    """
    if _most_l33t_subs(table) <= L33T_SUBS:
        return _zxcvbn_enumerate_l33t_subs(table)
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
    if len(chosen) == len(table):  # all of them fit after all: zxcvbn's own tables, in its order
        return _zxcvbn_enumerate_l33t_subs(table)
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


def _index_key(dictionaries: dict) -> str:
    """Name the word index of these dictionaries: their names and sizes, and the packages' versions."""
    parts = [f"{name}:{len(ranked)}" for name, ranked in dictionaries.items() if name != "user_inputs"]
    parts += [f"{package}={metadata.version(package)}" for package in ("zxcvbn", "zxcvbn-pl", "marisa-trie")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _identity(dictionaries: dict) -> tuple:
    """Tell these dictionaries apart cheaply: the objects the word index was made of, by name."""
    return tuple((name, id(ranked)) for name, ranked in dictionaries.items() if name != "user_inputs")


def _index_folder() -> str:
    """Return this user's private folder for the word index (made 0700), or raise OSError."""
    folder = os.path.join(tempfile.gettempdir(), f"pwdrst-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    # A folder somebody else made, or opened to others, could hold a planted index: never read it.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise OSError(f"{folder} is not a private folder of this user")
    return folder


def build_word_index(path: str) -> None:
    """Write one trie of every word of zxcvbn's and zxcvbn-pl's dictionaries to path (atomically).

    Reading the 700,000 Polish words takes about a second and 200 MB, so the app runs this in a
    child process (`python -m pwdrst.matcher PATH`) and maps the 2 MB result, shared by its workers.
    """
    zxcvbn_pl.register()
    words: set[str] = set()
    for name, ranked in zxcvbn_matching.RANKED_DICTIONARIES.items():
        if name != "user_inputs":
            words.update(ranked._trie.keys() if hasattr(ranked, "_trie") else ranked)
    partial = f"{path}.{os.getpid()}.partial"
    marisa_trie.Trie(words).save(partial)
    os.replace(partial, path)


def _load_word_index(dictionaries: dict):
    """Map the word index of these dictionaries, building it first in a child process if need be.

    Without it (no private temporary folder, a failed build) the match asks every trie in turn:
    the same matches, about 15 times slower. So a failure is logged and never stops the app.
    """
    try:
        path = os.path.join(_index_folder(), f"zxcvbn-words-{_index_key(dictionaries)}.marisa")
        if not os.path.exists(path):
            subprocess.run([sys.executable, "-m", "pwdrst.matcher", path], check=True, capture_output=True, timeout=120)
        return marisa_trie.Trie().mmap(path)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("zxcvbn word index unavailable, matching without it: %s", exc)
        return None


def _indices(dictionaries: dict) -> list:
    """Return [(trie, [(name, dictionary), ...])]: the tries to ask, each with the dictionaries it lists."""
    plain = _plain(dictionaries)
    tried = [(n, d) for n, d in dictionaries.items() if hasattr(d, "_trie")]
    if _word_index is not None and _word_index[0] == _identity(dictionaries):
        indices = [(_word_index[1], list(plain.items()) + tried)]
    else:
        indices = [(_union_of(plain), list(plain.items()))] + [(d._trie, [(n, d)]) for n, d in tried]
    if "user_inputs" in dictionaries:  # a small trie of the person's few words, kept while they repeat
        inputs = dictionaries["user_inputs"]
        key = tuple(inputs)
        if key not in _user_index:
            _user_index.clear()
            _user_index[key] = marisa_trie.Trie(key)
        indices.append((_user_index[key], [("user_inputs", inputs)]))
    return indices


def _bounded_dictionary_match(password, _ranked_dictionaries=zxcvbn_matching.RANKED_DICTIONARIES):
    """zxcvbn's dictionary_match, asking tries for the words that start at each position.

    zxcvbn tries every substring against every dictionary (quadratic in the length). Here one trie
    of every dictionary's words (or, without it, one per dictionary) and a small trie of the user
    inputs each list the words at position i in one call. The matches, and their order, are exactly
    zxcvbn's.
    """
    order = {name: n for n, name in enumerate(_ranked_dictionaries)}
    tries = _indices(_ranked_dictionaries)
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


def _pruned_sequence(password, matches, _exclude_additive=False):
    """zxcvbn's most_guessable_match_sequence, given only the cheapest match for each span.

    zxcvbn's search costs (matches x sequence lengths); a word found in five dictionaries, or under
    five l33t tables, is five matches over the same characters. A match over the same span [i..j]
    with more guesses makes every sequence through it dearer, so the search keeps the cheapest (the
    first of equals, as zxcvbn's own search would). Repetitive input has three times fewer matches.
    """
    cheapest: dict[tuple[int, int], tuple] = {}
    for match in matches:
        span = match["i"], match["j"]
        guesses = zxcvbn_scoring.estimate_guesses(match, password)  # kept in the match, as zxcvbn does
        if span not in cheapest or guesses < cheapest[span][0]:
            cheapest[span] = guesses, match
    kept = {id(match) for _, match in cheapest.values()}
    return _zxcvbn_most_guessable(password, [m for m in matches if id(m) in kept], _exclude_additive)


def prepare() -> None:
    """Register the Polish dictionaries with zxcvbn and load the word index (once).

    Policy's constructor calls this, so that the index (about 1.5 s to build the first time on a
    machine, a few milliseconds to map afterwards) is ready at start-up, not in somebody's first
    request. The union trie of zxcvbn's own dictionaries (about 40 ms) is the fallback without it.
    zxcvbn_pl.register() adds its dictionaries to zxcvbn's module-level ones for the whole process,
    as zxcvbn-pl documents; the matchers are replaced only by bounded().
    """
    global _prepared
    with _lock:
        if _prepared:
            return
        zxcvbn_pl.register()  # Polish common words, first names, surnames and places
        dictionaries = zxcvbn_matching.RANKED_DICTIONARIES
        global _word_index
        loaded = _load_word_index(dictionaries)
        _word_index = (_identity(dictionaries), loaded) if loaded is not None else None
        if _word_index is None:
            _union_of(_plain(dictionaries))  # the fallback's trie, built now rather than in a request
        _prepared = True


@contextmanager
def bounded():
    """Hold the lock and put the bounded matchers in zxcvbn.matching for the block, then restore.

    zxcvbn looks both functions up in its module at every call, so replacing them there is the only
    way in; doing it for the block alone leaves zxcvbn itself untouched for any other caller.
    """
    with _lock:
        saved = (
            zxcvbn_matching.enumerate_l33t_subs,
            zxcvbn_matching.dictionary_match,
            zxcvbn_matching.most_guessable_match_sequence,  # repeat_match's own import of it
            zxcvbn_scoring.most_guessable_match_sequence,
        )
        zxcvbn_matching.enumerate_l33t_subs = _bounded_l33t_subs
        zxcvbn_matching.dictionary_match = _bounded_dictionary_match
        zxcvbn_matching.most_guessable_match_sequence = _pruned_sequence
        zxcvbn_scoring.most_guessable_match_sequence = _pruned_sequence
        try:
            yield
        finally:
            (
                zxcvbn_matching.enumerate_l33t_subs,
                zxcvbn_matching.dictionary_match,
                zxcvbn_matching.most_guessable_match_sequence,
                zxcvbn_scoring.most_guessable_match_sequence,
            ) = saved


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


if __name__ == "__main__":  # the child process of _load_word_index
    build_word_index(sys.argv[1])
