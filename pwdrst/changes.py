"""The changes pwdrst makes to an account: its password and its recovery addresses.

Each change is written through the directory, audited, and announced by mail to the addresses that
must know. Views call these and translate the domain errors they raise into sentences.
"""

from flask import current_app

from pwdrst import audit, hooks, identity, links, mail, ratelimit
from pwdrst.directory import (
    Account,
    AccountChanged,
    AccountLocked,
    DirectoryError,
    InvalidCredentials,
    PasswordRejected,
    directory,
)
from pwdrst.extensions import client_address
from pwdrst.links import Token, TokenUsed


def reset_with_link(held: Token, account: Account, new: str) -> bool:
    """Set the password a reset link was opened for; raise TokenUsed if the link was used meanwhile.

    account is the one kept when the link was opened. The write happens only if the password is
    still the one the link was checked against, so a link used twice at the same moment writes once:
    OpenLDAP checks that in the write itself, first against the entry's revision as it was at the
    opening (no search: the common case), and when anything of the entry moved since (a failed
    login, a recovery address), against the stored password values read again. AD, which cannot,
    reads the account again and claims the link in the shared store (limits and sessions) first.
    Raise PasswordRejected when the directory refuses. Return True if the account stays locked.
    """
    ratelimit.link_use()
    unlock = current_app.config["RESET_UNLOCKS_ACCOUNT"]
    claimed = not directory.writes_once
    if claimed or not account.revision or (account.locked and not unlock):
        account = links.account_to_reset(held, account)  # the lock, too, may have gone since the opening
    if claimed and not ratelimit.claim(held.claim_name, held.remaining):
        raise TokenUsed("used")
    try:
        try:
            still_locked = directory.reset_password(account, new, unlock=unlock, as_read=True)
        except AccountChanged:
            if account.password_state:
                raise
            # The entry moved since the link was opened: is its password still the link's?
            account = links.account_to_reset(held, account)
            still_locked = directory.reset_password(account, new, unlock=unlock, as_read=True)
    except AccountChanged:
        # The same link was used a moment ago (another tab, a double click): it worked once.
        raise TokenUsed("used") from None
    except DirectoryError as exc:
        if claimed:
            ratelimit.release(held.claim_name)  # nothing was written: the link stays usable
        if isinstance(exc, PasswordRejected):
            audit.log("password_reset", "refused", account=account.login, reason=exc.reason, purpose=held.purpose)
        raise
    unlocked = account.locked and not still_locked
    audit.log("password_reset", "ok", account=account.login, purpose=held.purpose, unlocked=unlocked)
    identity.after_password_change(account)
    mail.password_changed(account, client_address())
    hooks.after_change(account.login)
    return still_locked


def change_own(account: Account, current: str, new: str) -> None:
    """Change the password as the person, who gave the current one again.

    Raise InvalidCredentials (wrong current password), AccountLocked or PasswordRejected.
    """
    try:
        by_service = directory.change_password(account, current, new)
    except (InvalidCredentials, AccountLocked, PasswordRejected) as exc:
        reason = getattr(exc, "reason", None) or ("locked" if isinstance(exc, AccountLocked) else "wrong_current")
        audit.log("password_changed", "refused", account=account.login, reason=reason)
        raise
    audit.log("password_changed", "ok", account=account.login, expired_password=by_service)
    identity.after_password_change(account)
    mail.password_changed(account, client_address())
    hooks.after_change(account.login)


def add_recovery_address(account: Account, mode: str, address: str) -> None:
    """Store a confirmed recovery address (added, or replacing the others); tell the old addresses."""
    before = list(account.recovery_addresses)
    if mode == "replace":
        after = [address]
    else:
        after = before + [a for a in [address] if a.lower() not in map(str.lower, before)]
    directory.set_recovery_addresses(account, after)
    audit.log("recovery_confirmed", "ok", account=account.login, mode=mode)
    if before:
        mail.recovery_changed(account, before, client_address())


def remove_recovery_address(account: Account, index: int) -> None:
    """Remove one recovery address, chosen by its place in the list; tell the removed address."""
    removed = account.recovery_addresses[index]
    remaining = [a for i, a in enumerate(account.recovery_addresses) if i != index]
    directory.set_recovery_addresses(account, remaining)
    audit.log("recovery_removed", "ok", account=account.login, left=len(remaining))
    mail.recovery_changed(account, [removed], client_address())
