"""The password policy: one pure function that every flow, the meter and the CLI share.

`Policy.check` returns every problem at once, each with a code and a translatable sentence, plus
zxcvbn's score and feedback (translated). The cheap checks run first, and over-long input never
reaches zxcvbn; zxcvbn itself is asked through pwdrst.matcher, which bounds its cost.
"""

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass, field

from flask import current_app, g, has_request_context, session
from flask_babel import lazy_gettext as _l

from pwdrst import breach, matcher
from pwdrst.directory import DirectoryError

# zxcvbn's English feedback, through our catalogue.
FEEDBACK = {
    "Use a few words, avoid common phrases.": _l("Use a few words, avoid common phrases."),
    "No need for symbols, digits, or uppercase letters.": _l("No need for symbols, digits, or uppercase letters."),
    "Add another word or two. Uncommon words are better.": _l("Add another word or two. Uncommon words are better."),
    "Straight rows of keys are easy to guess.": _l("Straight rows of keys are easy to guess."),
    "Short keyboard patterns are easy to guess.": _l("Short keyboard patterns are easy to guess."),
    "Use a longer keyboard pattern with more turns.": _l("Use a longer keyboard pattern with more turns."),
    'Repeats like "aaa" are easy to guess.': _l('Repeats like "aaa" are easy to guess.'),
    'Repeats like "abcabcabc" are only slightly harder to guess than "abc".': _l(
        'Repeats like "abcabcabc" are only slightly harder to guess than "abc".'
    ),
    "Avoid repeated words and characters.": _l("Avoid repeated words and characters."),
    'Sequences like "abc" or "6543" are easy to guess.': _l('Sequences like "abc" or "6543" are easy to guess.'),
    "Avoid sequences.": _l("Avoid sequences."),
    "Recent years are easy to guess.": _l("Recent years are easy to guess."),
    "Avoid recent years.": _l("Avoid recent years."),
    "Avoid years that are associated with you.": _l("Avoid years that are associated with you."),
    "Dates are often easy to guess.": _l("Dates are often easy to guess."),
    "Avoid dates and years that are associated with you.": _l("Avoid dates and years that are associated with you."),
    "This is a top-10 common password.": _l("This is a top-10 common password."),
    "This is a top-100 common password.": _l("This is a top-100 common password."),
    "This is a very common password.": _l("This is a very common password."),
    "This is similar to a commonly used password.": _l("This is similar to a commonly used password."),
    "A word by itself is easy to guess.": _l("A word by itself is easy to guess."),
    "Names and surnames by themselves are easy to guess.": _l("Names and surnames by themselves are easy to guess."),
    "Common names and surnames are easy to guess.": _l("Common names and surnames are easy to guess."),
    "Capitalization doesn't help very much.": _l("Capitalization doesn't help very much."),
    "All-uppercase is almost as easy to guess as all-lowercase.": _l(
        "All-uppercase is almost as easy to guess as all-lowercase."
    ),
    "Reversed words aren't much harder to guess.": _l("Reversed words aren't much harder to guess."),
    "Predictable substitutions like '@' instead of 'a' don't help very much.": _l(
        "Predictable substitutions like '@' instead of 'a' don't help very much."
    ),
}

# Our own warnings, for what zxcvbn's feedback does not name.
PERSONAL_WARNING = _l("Your name, login or address is easy to guess for anyone who knows you.")
ORGANISATION_WARNING = _l("The organisation's name and city are the first words anyone would try.")
POLISH_WARNING = _l("Common Polish words, names and places are easy to guess.")

PROBLEM_MESSAGES = {
    "too_short": _l("Use at least %(min)d characters (this one has %(count)d)."),
    "too_long": _l("Use at most %(max)d characters (this one has %(count)d)."),
    "control": _l("Do not use control characters (such as tabs or line breaks)."),
    "same_as_current": _l("The new password must differ from the current one."),
    "contains_login": _l("Do not put your login in the password."),
    "personal": _l(
        "Your name, login, addresses and the organisation's name do not count towards the length: "
        "without them this password has only %(count)d characters of the %(min)d needed."
    ),
    "blocklisted": _l("This password is on the list of leaked or forbidden passwords."),
    "breached": _l(
        "This password has appeared in data breaches, so attackers try it among the first. "
        "Choose another: add a word or two."
    ),
    "weak": _l("This password is too easy to guess. Add more words or make it longer."),
    "complexity": _l(
        "The domain requires characters of three of these four kinds: capital letters, small letters, digits, "
        "other characters."
    ),
}


@dataclass(frozen=True)
class Problem:
    """One rule a password breaks: a code for programs, a sentence for people."""

    code: str
    params: dict = field(default_factory=dict)

    @property
    def message(self) -> str:
        """Return the sentence in the current language."""
        return str(PROBLEM_MESSAGES[self.code]) % self.params if self.params else str(PROBLEM_MESSAGES[self.code])


@dataclass(frozen=True)
class Verdict:
    """What the policy says of a password."""

    problems: tuple[Problem, ...]
    score: int
    warning: object = ""
    suggestions: tuple = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(p.code for p in self.problems)

    def as_json(self) -> dict:
        """Return the meter's answer, in the current language."""
        return {
            "ok": self.ok,
            "score": self.score,
            "problems": [{"code": p.code, "message": p.message} for p in self.problems],
            "warning": str(self.warning) if self.warning else "",
            "suggestions": [str(s) for s in self.suggestions],
        }


class Policy:
    """The password rules of one configuration."""

    def __init__(
        self,
        min_length=15,
        max_length=128,
        min_score=3,
        organisation_words=(),
        blocklist_file=None,
        breach_filter=None,
        domain_rules=None,
    ):
        if max_length < 64:
            raise ValueError("the maximum length may not be below 64")
        if not 1 <= min_length <= max_length:
            raise ValueError("the minimum length must be between 1 and the maximum length")
        if not 0 <= min_score <= 4:
            raise ValueError("the minimum score must be 0 to 4")
        self.min_length = min_length
        self.max_length = max_length
        self.min_score = min_score
        self.organisation_words = tuple(w.lower() for w in _words(organisation_words))
        self.blocklist = load_blocklist(blocklist_file) if blocklist_file else frozenset()
        # Memory-mapped: every worker shares one copy (see pwdrst/breach.py).
        self.breach_filter = breach.BreachFilter(breach_filter) if breach_filter else None
        # A callable returning the directory's own rules (AD's DomainRules) or None: their
        # complexity rule is checked here too, so the form and the meter refuse before AD does.
        self.domain_rules = domain_rules
        matcher.prepare()

    @classmethod
    def from_config(cls, config) -> "Policy":
        """Build the policy from the POLICY_* settings."""
        return cls(
            min_length=int(config["POLICY_MIN_LENGTH"]),
            max_length=int(config["POLICY_MAX_LENGTH"]),
            min_score=int(config["POLICY_MIN_SCORE"]),
            organisation_words=config["POLICY_ORGANISATION_WORDS"],
            blocklist_file=config["POLICY_BLOCKLIST_FILE"],
            breach_filter=config["POLICY_BREACH_FILTER"],
        )

    def check(self, password: str, account=None, current: str | None = None, score: int | None = None) -> Verdict:
        """Return every problem of password for account (whose current password may be known).

        A score already computed for this password and account may be given: zxcvbn is then not asked.
        """
        password = password or ""
        length = len(password)  # code points, not bytes
        problems = []
        if length < self.min_length:
            problems.append(Problem("too_short", {"min": self.min_length, "count": length}))
        if length > self.max_length:
            # Nothing costly on over-long input: only this sentence.
            return Verdict((Problem("too_long", {"max": self.max_length, "count": length}),), 0)
        printable = "".join(c for c in password if unicodedata.category(c) not in ("Cc", "Cs"))
        if printable != password:
            # Refused on their own; zxcvbn never sees them (zxcvbn-pl's tries fail on a NUL).
            problems.append(Problem("control"))
        if current is not None and password == current:
            problems.append(Problem("same_as_current"))
        login = (getattr(account, "login", "") or "").lower()
        if len(login) >= 3 and login in password.lower():
            problems.append(Problem("contains_login"))
        if length >= self.min_length:
            remainder = self._without_known_words(password, account)
            if remainder is not None and len(remainder) < self.min_length:
                problems.append(Problem("personal", {"count": len(remainder), "min": self.min_length}))
        if password.lower() in self.blocklist:
            problems.append(Problem("blocklisted"))
        if self.breach_filter is not None and password and password in self.breach_filter:
            problems.append(Problem("breached"))
        if self._domain_requires_complexity() and not is_complex(password):
            problems.append(Problem("complexity"))
        if score is not None:
            warning, suggestions = "", ()
        elif printable:
            score, warning, suggestions = self._strength(printable, account)
        else:
            score, warning, suggestions = 0, "", ()
        if score < self.min_score:
            problems.append(Problem("weak"))
        return Verdict(tuple(problems), score, warning, suggestions)

    def _domain_requires_complexity(self) -> bool:
        if self.domain_rules is None:
            return False
        try:
            rules = self.domain_rules()
        except DirectoryError:
            return False  # the directory applies its rule itself when it answers again
        return bool(rules and rules.complexity)

    def _strength(self, password: str, account) -> tuple[int, object, tuple]:
        inputs = self._user_inputs(account)
        best = matcher.score(password, inputs)
        warning = FEEDBACK.get(best["feedback"]["warning"], "")
        suggestions = [FEEDBACK[s] for s in best["feedback"]["suggestions"] if s in FEEDBACK]
        if not warning and best["score"] < self.min_score:
            warning = self._own_warning(best["sequence"], inputs)
        return best["score"], warning, tuple(suggestions)

    def _without_known_words(self, password: str, account) -> str | None:
        """Return the password without the words anyone who knows the person would try first.

        None when it holds none of them. Matching ignores case and Polish diacritics.
        """
        words = {_fold(w) for w in self._user_inputs(account) if len(w) >= 3}
        folded = _fold(password)
        remainder = folded
        for word in sorted(words, key=len, reverse=True):
            remainder = remainder.replace(word, "")
        return None if remainder == folded else remainder

    def _user_inputs(self, account) -> list[str]:
        inputs = list(self.organisation_words)
        if account is not None:
            inputs += _words([account.login, account.given_name, account.surname, account.display_name])
            inputs += [a.split("@", 1)[0] for a in account.addresses + account.recovery_addresses]
            inputs += _words(a.split("@", 1)[0] for a in account.addresses + account.recovery_addresses)
        return [w.lower() for w in inputs if w]

    def _own_warning(self, sequence, inputs):
        names = {m.get("dictionary_name") for m in sequence if m.get("pattern") == "dictionary"}
        if "user_inputs" in names:
            tokens = {m["matched_word"] for m in sequence if m.get("dictionary_name") == "user_inputs"}
            if tokens & set(self.organisation_words):
                return ORGANISATION_WARNING
            return PERSONAL_WARNING
        if names & matcher.POLISH_DICTIONARIES:
            return POLISH_WARNING
        return ""


def is_complex(password: str) -> bool:
    """Return whether a password has characters of three of four kinds (AD's complexity rule).

    The kinds: capital letters, small letters, digits, and anything else (Polish letters are letters).
    """
    kinds = {
        "upper" if c.isupper() else "lower" if c.islower() else "digit" if c.isdigit() else "other" for c in password
    }
    return len(kinds) >= 3


def _fold(text: str) -> str:
    """Lower-case text and drop diacritics (ł counts as l), keeping one character per character."""
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("ł", "l"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _words(values) -> list[str]:
    words = []
    for value in values:
        for part in str(value or "").replace(".", " ").replace("-", " ").replace("_", " ").split():
            if len(part) >= 2:
                words.append(part)
    return words


def load_blocklist(path: str) -> frozenset:
    """Read a blocklist file (one password per line) into a set of lower-cased passwords."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        return frozenset(line.rstrip("\r\n").lower() for line in fh if line.strip())


def init_app(app) -> None:
    """Build the app's policy from its settings (and, with LDAP_FLAVOUR=ad, the domain's complexity rule)."""
    policy = Policy.from_config(app.config)
    if app.config["LDAP_FLAVOUR"] == "ad":
        policy.domain_rules = lambda: app.extensions["pwdrst.directory"].domain_rules()
    app.extensions["pwdrst.policy"] = policy


def current_policy() -> Policy:
    """Return the current app's policy."""
    return current_app.extensions["pwdrst.policy"]


# The session key under which the meter leaves its last score for the form that follows.
SCORE_KEY = "strength"


def _score_digest(password: str, account) -> str:
    """Return a digest of the password bound to the account, keyed with SECRET_KEY (never the password)."""
    who = f"{getattr(account, 'dn', '')}\n{getattr(account, 'login', '')}"
    message = f"pwdrst.strength\n{who}\n{password}".encode("utf-8", "surrogatepass")
    return hmac.new(current_app.config["SECRET_KEY"].encode(), message, hashlib.sha256).hexdigest()


def check_password(
    password: str, account=None, current: str | None = None, reuse: bool = True, remember: bool = False
) -> Verdict:
    """Check a password against the current app's policy.

    zxcvbn's score is the costly part (about 4 ms). With remember (the meter), the score is kept in
    the server-side session under a keyed digest of the account and the password; with reuse (the
    forms), a score kept for the same password and account is taken instead of scoring it again.
    The cheap rules always run, the directory still decides, and nothing of it reaches the cookie.
    """
    known = None
    digest = _score_digest(password or "", account) if has_request_context() and (reuse or remember) else None
    kept = session.get(SCORE_KEY) if digest and reuse else None
    if isinstance(kept, dict) and isinstance(kept.get("score"), int):
        if hmac.compare_digest(str(kept.get("digest", "")), digest):
            known = kept["score"]
    verdict = current_policy().check(password, account, current, score=known)
    if digest and remember:
        session[SCORE_KEY] = {"digest": digest, "score": verdict.score}
    if has_request_context():
        g.policy_problems = verdict.codes  # for the metrics of a refusal this request may audit
    return verdict
