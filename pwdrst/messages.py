"""Sentences for people: the directory's refusals and the notices flashed after a login or a change."""

from flask_babel import format_timedelta, ngettext
from flask_babel import lazy_gettext as _l

from pwdrst.display import mask_address

REFUSALS = {
    "too_short": _l("The directory refused the password as too short."),
    "insufficient_quality": _l("The directory refused the password as not strong enough."),
    "in_history": _l("You have used this password before. Choose one you have not used."),
    "too_young": _l("The password was changed too recently. Try again later, or contact the helpdesk."),
    "wrong_current": _l("The current password is not correct."),
    "change_not_allowed": _l("This account may not change its own password. Contact the helpdesk."),
    "must_supply_old": _l("The directory needs the current password for this change."),
    "change_after_reset": _l("The password must be changed before anything else."),
    "expired": _l("The password has expired."),
    "locked": _l("The account is locked. Contact the helpdesk to unlock it."),
    "not_allowed": _l("The directory does not allow this change. Contact the helpdesk."),
    "rejected": _l("The directory refused the password. Try another one, or contact the helpdesk."),
    # Active Directory's refusals; the rules the domain applies follow (DOMAIN_RULES).
    "complexity": _l("The password does not meet the domain's complexity rule."),
    "domain_rules": _l("The password does not meet the domain's rules."),
}

# The domain's own rules, said after an AD refusal (PasswordRejected.details holds the settings).
DOMAIN_RULES = {
    "too_short": _l("The domain requires at least %(min_length)d characters."),
    "complexity": _l(
        "The domain requires characters of three of these four kinds: capital letters, small letters, digits, "
        "other characters."
    ),
    "in_history": _l("The domain does not accept any of your last %(history_length)d passwords."),
    "too_young": _l("The domain allows a new change only %(min_age)s after the last one."),
}


def refusal(reason: str, details: dict | None = None) -> str:
    """Return the sentence for a directory refusal reason, with the directory's rules where it says them."""
    sentence = str(REFUSALS.get(reason, REFUSALS["rejected"]))
    if not details:
        return sentence
    rules = []
    for rule in ("too_short", "complexity", "in_history", "too_young") if reason == "domain_rules" else (reason,):
        if rule not in DOMAIN_RULES or not _applies(rule, details):
            continue
        values = {**details, "min_age": format_timedelta(details.get("min_age", 0), threshold=1)}
        rules.append(str(DOMAIN_RULES[rule]) % values)
    return " ".join([sentence, *rules])


def _applies(rule: str, details: dict) -> bool:
    return bool(
        {
            "too_short": details.get("min_length"),
            "complexity": details.get("complexity"),
            "in_history": details.get("history_length"),
            "too_young": details.get("min_age"),
        }[rule]
    )


def expiry_notice(seconds: int) -> str:
    """Return the warning that the password expires soon."""
    days = max(1, seconds // 86400)
    return ngettext(
        "Your password expires in %(num)d day. Change it now.",
        "Your password expires in %(num)d days. Change it now.",
        days,
    )


def expired_notice(expired) -> str:
    """Return the notice for a login whose password must be changed now (a PasswordExpired)."""
    if expired.must_change:
        return str(
            _l("Your password was set by the helpdesk or an administrator and must be changed now. Choose your own.")
        )
    if expired.bound and expired.grace_remaining:
        return ngettext(
            "Your password has expired. It will let you sign in %(num)d more time; choose a new one now.",
            "Your password has expired. It will let you sign in %(num)d more times; choose a new one now.",
            expired.grace_remaining,
        )
    if expired.bound:
        return str(_l("Your password has expired and this was the last sign-in it allows. Choose a new one now."))
    return str(_l("Your password has expired. Choose a new one now."))


def confirmation_sent(address: str) -> str:
    """Return the notice that a confirmation link went to a new recovery address."""
    return str(
        _l("We have sent a confirmation link to %(address)s. The address is saved once you open it.", address=address)
    )


def issue_refusals(refused, form) -> list[str]:
    """Return the sentences for a helpdesk link that could not be issued (a CannotIssue)."""
    if refused.reason == "no_recovery_address":
        return [str(_l("This account has no recovery address. Send the link to an address you checked, or show it."))]
    return [str(error) for errors in form.errors.values() for error in errors]


def link_sent(max_age: int, addresses: list[str]) -> str:
    """Return the notice that a helpdesk link was sent, naming the (masked) addresses it went to."""
    return ngettext(
        "Link sent to %(addresses)s. It is valid for %(num)d hour and dies at the first password change.",
        "Link sent to %(addresses)s. It is valid for %(num)d hours and dies at the first password change.",
        max_age // 3600,
        addresses=", ".join(mask_address(a) for a in addresses),
    )
