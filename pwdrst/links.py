"""Links: everything about a signed link, from issuing it to using it. The only itsdangerous importer.

A link's token names the account (its login) and carries a fingerprint of the state it may act on
(the password for reset links, the recovery addresses for confirmations), so it dies at the first
change of that state by any means: single use without a database. Each purpose has its own salt, so
a token for one purpose never works for another. The current SECRET_KEY signs; SECRET_KEY_FALLBACKS
still verify. Nothing in a token is an address or anything else the holder should not read.

Purposes: "reset" (the person's own request, RESET_LINK_MAX_AGE), "helpdesk" (the helpdesk and the
command line; the token carries its own lifetime) and "recovery" (confirming a new recovery address).
Links are built from PUBLIC_URL, never from the request's Host header.
"""

import dataclasses
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

from pwdrst import audit, mail, ratelimit
from pwdrst.directory import Account, AmbiguousAccount, directory, fingerprint
from pwdrst.identity import is_protected, staff_roles

SALTS = {
    "reset": "pwdrst.reset",
    "helpdesk": "pwdrst.helpdesk",
    "recovery": "pwdrst.recovery",
}

# Purposes a reset link may have, with the longest lifetime each may have. Helpdesk and command-line
# links carry their own, shorter lifetime inside the signed token.
RESET_PURPOSES = (
    ("reset", lambda config: int(config["RESET_LINK_MAX_AGE"])),
    ("helpdesk", lambda config: max(86400, int(config["CLI_LINK_MAX_AGE_CAP"]))),
)


class TokenError(Exception):
    """A link that cannot be used."""


class TokenExpired(TokenError):
    """The link is older than its lifetime."""


class TokenInvalid(TokenError):
    """The link is malformed, tampered with, signed with an unknown key, or for another purpose."""


class TokenUsed(TokenError):
    """The link is genuine, but its account's state has changed since it was made (or it is gone)."""


class CannotIssue(Exception):
    """No link can be issued for this request; `reason` is a code, `detail` a sentence for staff."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Token:
    """What a verified token says."""

    purpose: str
    login: str
    fingerprint: str
    max_age: int
    extra: str | None = None
    signed_at: float = 0.0

    @property
    def remaining(self) -> int:
        """Return the seconds the link has left to live."""
        return max(1, int(self.signed_at + self.max_age - time.time()) + 1)

    @property
    def claim_name(self) -> str:
        """Return the name under which a use of this link is claimed (the same for every link to one state)."""
        digest = hashlib.sha256(f"{self.purpose}\n{self.login}\n{self.fingerprint}".encode()).hexdigest()
        return "link/" + digest[:32]


# ---------------------------------------------------------------- tokens


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    keys = [*current_app.config["SECRET_KEY_FALLBACKS"], current_app.config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=SALTS[purpose])


def make_token(purpose: str, login: str, fingerprint: str, max_age: int | None = None, extra: str | None = None) -> str:
    """Sign a token for an account's current state.

    max_age is carried only when the link lives shorter than its purpose's cap (helpdesk and CLI
    links), which keeps the common link short enough for mail clients that wrap lines.
    """
    payload: list = [login, fingerprint]
    if max_age is not None or extra is not None:
        payload.append(int(max_age or 0))
    if extra is not None:
        payload.append(extra)
    return _serializer(purpose).dumps(payload)


def read_token(purpose: str, token: str, cap: int) -> Token:
    """Verify a token's signature and age (never more than cap seconds); raise TokenError."""
    if not isinstance(token, str) or not 10 < len(token) < 1024 or not token.isascii():
        raise TokenInvalid("malformed")
    try:
        payload, signed_at = _serializer(purpose).loads(token, max_age=cap, return_timestamp=True)
    except SignatureExpired as exc:
        raise TokenExpired("expired") from exc
    except (BadData, ValueError, UnicodeDecodeError, TypeError) as exc:
        raise TokenInvalid("invalid") from exc
    if (
        not isinstance(payload, list)
        or len(payload) not in (2, 3, 4)
        or not all(isinstance(p, str) for p in payload[:2])
    ):
        raise TokenInvalid("invalid payload")
    max_age = payload[2] if len(payload) > 2 else cap
    if not isinstance(max_age, int) or isinstance(max_age, bool) or max_age < 0:
        raise TokenInvalid("invalid payload")
    max_age = max_age or cap
    # The token's own lifetime may be shorter than the cap (helpdesk and CLI links carry theirs).
    if (datetime.now(UTC) - signed_at).total_seconds() > max_age:
        raise TokenExpired("expired")
    extra = payload[3] if len(payload) == 4 else None
    extra = extra if isinstance(extra, str) else None
    return Token(purpose, payload[0], payload[1], max_age, extra, signed_at.timestamp())


def same_state(token: Token, state: str) -> bool:
    """Return whether the account's state is still the one the token was made for."""
    return hmac.compare_digest(token.fingerprint.encode(), state.encode())


def public_url(path: str) -> str:
    """Build an absolute link from PUBLIC_URL, never from the request's Host header."""
    return current_app.config["PUBLIC_URL"] + path


# ---------------------------------------------------------------- reset links


def reset_link(account: Account, purpose: str = "reset", max_age: int | None = None) -> str:
    """Return a new reset link for the account's current password state.

    Self-service links live RESET_LINK_MAX_AGE; helpdesk and command-line links carry their own
    lifetime in the signed token.
    """
    return public_url("/reset/" + make_token(purpose, account.login, account.fingerprint, max_age))


def read_reset_token(token: str | None) -> Token:
    """Verify a reset link's signature and age for any reset purpose, without the directory; raise TokenError."""
    if not token:
        raise TokenError("missing")
    expired = False
    for purpose, cap in RESET_PURPOSES:
        try:
            return read_token(purpose, token, cap(current_app.config))
        except TokenExpired:
            expired = True
        except TokenInvalid:
            continue
    raise TokenExpired("expired") if expired else TokenInvalid("invalid")


def verify_reset(token: str | None) -> tuple[Token, Account]:
    """Return (token, account) for a usable reset link; raise TokenError saying why not. One directory search."""
    held = read_reset_token(token)
    account = directory.get_account(held.login)
    if account is None or not same_state(held, account.fingerprint):
        raise TokenUsed("used")
    return held, account


def keep_account(account: Account) -> dict:
    """Return what the session keeps of the account a link was opened for: never the stored password values."""
    kept = {f.name: getattr(account, f.name) for f in dataclasses.fields(Account) if f.name != "password_state"}
    kept["addresses"], kept["recovery_addresses"] = list(account.addresses), list(account.recovery_addresses)
    changed = account.password_changed_at
    kept["password_changed_at"] = changed.isoformat() if changed else None
    return kept


def kept_account(kept) -> Account | None:
    """Return the account keep_account kept, or None if the session holds none (or something else)."""
    if not isinstance(kept, dict):
        return None
    try:
        values = dict(kept)
        values["addresses"], values["recovery_addresses"] = (
            tuple(values["addresses"]),
            tuple(values["recovery_addresses"]),
        )
        changed = values["password_changed_at"]
        values["password_changed_at"] = datetime.fromisoformat(changed) if changed else None
        return Account(**values)
    except (KeyError, TypeError, ValueError):
        return None


def verify_opened(token: str | None, kept) -> tuple[Token, Account]:
    """Return (token, account) for the link opened in this session, without asking the directory.

    The account is the one read when the link was opened, kept in the server-side session (which
    only this browser's cookie names); the token is checked again and must still name it and its
    state. A session from before accounts were kept falls back to verify_reset.
    """
    account = kept_account(kept)
    if account is None:
        return verify_reset(token)
    held = read_reset_token(token)
    if account.login != held.login or not same_state(held, account.fingerprint):
        raise TokenUsed("used")
    return held, account


def account_to_reset(held: Token, account: Account) -> Account:
    """Read the account again just before a reset by link writes; raise TokenUsed if its state moved.

    A second directory search, only when it is needed: on AD, which claims the link in the shared
    store instead of asserting anything in the write, it keeps a password changed by other means
    since the link was opened from being overwritten; on OpenLDAP, when the write asserting the
    entry's revision kept at the opening failed (something of the entry moved), it gives the stored
    password values to assert instead (RFC 4528), which the session never holds.
    """
    fresh = directory.get_account(held.login)
    if fresh is None or fresh.dn != account.dn or not same_state(held, fresh.fingerprint):
        raise TokenUsed("used")
    return fresh


def request_reset(identifier: str) -> None:
    """Mail a reset link to the account's recovery addresses if it may have one. Audited.

    The caller answers the same way whatever happened: every case does the same directory work (one
    lookup) and none waits for SMTP.
    """
    address_allowed = ratelimit.reset_request()
    try:
        account = directory.find_account(identifier)
    except AmbiguousAccount as exc:
        audit.log("reset_requested", "ambiguous", accounts=list(exc.dns))
        return
    if not address_allowed:
        outcome = "limited"
    elif account is None:
        outcome = "unknown"
    elif not account.recovery_addresses:
        outcome = "no_recovery_address"
    elif not ratelimit.reset_mail(account):
        outcome = "limited"
    else:
        max_age = int(current_app.config["RESET_LINK_MAX_AGE"])
        mail.reset_link(account, account.recovery_addresses, reset_link(account), max_age)
        outcome = "sent"
    audit.log("reset_requested", outcome, account=account.login if account else None)


# Why a staff member may not issue a link for an account at all (the helpdesk answers 403).
NOT_YOURS = ("own_account", "staff", "protected")


def helpdesk_refusal(account: Account, actor: str, roles: set[str]) -> str | None:
    """Return why this staff member may not issue a link for the account (one of NOT_YOURS), or None.

    A link hands over the account, so: nobody issues one for their own account, and the accounts
    of helpdesk staff, administrators and the protected group are for administrators only (else
    a helpdesk member could send an administrator's link to themselves and become one).
    """
    if account.login.lower() == actor.lower():
        return "own_account"
    if "admin" in roles:
        return None
    if staff_roles(account):
        return "staff"
    if is_protected(account):
        return "protected"
    return None


def issue_helpdesk_link(account: Account, actor: str, roles: set[str], delivery: str, address: str = "") -> str | None:
    """Issue a helpdesk link: mail it (recovery or a checked address) or return it to show once.

    Raise CannotIssue when the staff member may not, or there is nowhere to send it. Audited.
    """
    refused = helpdesk_refusal(account, actor, roles)
    if refused:
        audit.log("helpdesk_link", "refused", account=account.login, actor=actor, reason=refused)
        raise CannotIssue(refused)
    if delivery == "recovery" and not account.recovery_addresses:
        raise CannotIssue("no_recovery_address")
    max_age = int(current_app.config["HELPDESK_LINK_MAX_AGE"])
    link = reset_link(account, "helpdesk", max_age)
    audit.log("helpdesk_link", "issued", account=account.login, actor=actor, delivery=delivery)
    if delivery == "shown":
        return link
    recipients = account.recovery_addresses if delivery == "recovery" else [address.strip()]
    mail.helpdesk_link(account, recipients, link, max_age, issued_by="helpdesk")
    return None


def issue_admin_link(identifier: str, send: bool, max_age: int, actor: str, dry_run=False, allow_protected=False):
    """Issue one person's link from the command line; return (account, link or None). Audited.

    With send, the link is mailed to the recovery addresses and not returned. Raise CannotIssue with
    the reason (ambiguous, unknown, protected, no_recovery_address) when no link can be issued.
    """
    try:
        account = directory.find_account(identifier)
    except AmbiguousAccount as exc:
        audit.log("cli_link", "ambiguous", account=None, actor=actor, accounts=list(exc.dns))
        raise CannotIssue("ambiguous", "several accounts: " + "; ".join(exc.dns)) from None
    if account is None:
        audit.log("cli_link", "unknown", account=None, actor=actor)
        raise CannotIssue("unknown", "no such account")
    if not allow_protected and is_protected(account):
        audit.log("cli_link", "protected", account=account.login, actor=actor)
        raise CannotIssue("protected", f"{account.login} is in the protected group")
    if send and not account.recovery_addresses:
        audit.log("cli_link", "no_recovery_address", account=account.login, actor=actor)
        raise CannotIssue("no_recovery_address", f"{account.login} has no recovery address")
    if dry_run:
        return account, None
    link = reset_link(account, "helpdesk", max_age)
    if not send:
        audit.log("cli_link", "printed", account=account.login, actor=actor, delivery="shown")
        return account, link
    mail.helpdesk_link(account, account.recovery_addresses, link, max_age, issued_by="administrator")
    audit.log("cli_link", "sent", account=account.login, actor=actor, delivery="recovery")
    return account, None


# ---------------------------------------------------------------- recovery-address confirmations


def recovery_state(account: Account) -> str:
    """Return a fingerprint of the recovery addresses, so a confirmation dies if they change."""
    return fingerprint(account.dn, "\n".join(sorted(a.lower() for a in account.recovery_addresses)))


def send_recovery_confirmation(account: Account, address: str, replace: bool) -> None:
    """Mail a confirmation link to a new recovery address; it is stored only once opened. Audited."""
    mode = "replace" if replace else "add"
    token = make_token("recovery", account.login, recovery_state(account), extra=f"{mode}:{address}")
    hours = int(current_app.config["RECOVERY_LINK_MAX_AGE"]) // 3600
    mail.recovery_confirmation(account, address, public_url("/recovery/" + token), hours)
    audit.log("recovery_requested", "sent", account=account.login, mode=mode)


def verify_recovery(token: str | None) -> tuple[Account, str, str]:
    """Return (account, mode, address) for a usable confirmation link; raise TokenError saying why not."""
    if not token:
        raise TokenError("missing")
    held = read_token("recovery", token, int(current_app.config["RECOVERY_LINK_MAX_AGE"]))
    account = directory.get_account(held.login)
    mode, _, address = (held.extra or "").partition(":")
    if account is None or mode not in ("add", "replace") or not same_state(held, recovery_state(account)):
        raise TokenUsed("used")
    return account, mode, address
