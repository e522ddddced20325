"""Sentences for the directory's refusals, shared by every flow that writes a password."""

from flask_babel import lazy_gettext as _l

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
}


def refusal(reason: str) -> str:
    """Return the sentence for a directory refusal reason."""
    return str(REFUSALS.get(reason, REFUSALS["rejected"]))
