"""Build static/words/{pl,en}.txt, the passphrase suggestion's word lists, from installed packages.

Run once by a developer (the lists are committed; nothing is downloaded at run time):

    .venv/bin/python scripts/build_wordlists.py

Polish: zxcvbn-pl's common words; English: zxcvbn's Wikipedia frequency list. Both filtered to plain
lowercase words of 4-8 letters that are no first name, surname or place (nobody's own data in a
suggestion), most frequent first, 4096 each: 12 bits a word, 60 bits for five.
"""

import pathlib
import re

import zxcvbn_pl
from zxcvbn.frequency_lists import FREQUENCY_LISTS

SIZE = 4096
OUT = pathlib.Path(__file__).resolve().parent.parent / "static" / "words"


def polish() -> list[str]:
    """Return the most frequent plain Polish words."""
    tries = {name: d._trie for name, d in zxcvbn_pl.dictionaries().items()}  # the word -> rank indices
    names = set()
    for name in ("pl_first_names", "pl_last_names", "pl_places"):
        names |= set(tries[name].keys())
    plain = re.compile(r"[a-ząćęłńóśźż]{4,8}")
    common = tries["pl_common_words"]
    ranked = sorted((rank[0], word) for word, rank in common.items() if plain.fullmatch(word) and word not in names)
    return [word for _, word in ranked]


def english() -> list[str]:
    """Return the most frequent plain English words."""
    names = set(FREQUENCY_LISTS["female_names"]) | set(FREQUENCY_LISTS["male_names"]) | set(FREQUENCY_LISTS["surnames"])
    plain = re.compile(r"[a-z]{4,8}")
    return [w for w in FREQUENCY_LISTS["english_wikipedia"] if plain.fullmatch(w) and w not in names]


def main() -> None:
    """Write both lists, one word a line."""
    OUT.mkdir(parents=True, exist_ok=True)
    for language, words in (("pl", polish()), ("en", english())):
        chosen = sorted(set(words[:SIZE]))
        assert len(chosen) == SIZE, (language, len(chosen))
        (OUT / f"{language}.txt").write_text("\n".join(chosen) + "\n", encoding="utf-8")
        print(f"{language}: {len(chosen)} words")


if __name__ == "__main__":
    main()
