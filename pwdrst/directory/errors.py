"""What the directory layer raises, and the one check that turns a server's "unavailable" into it."""


class DirectoryError(Exception):
    """Base class of everything the directory layer raises."""


class DirectoryUnavailable(DirectoryError):
    """No directory server answered in time."""


class InvalidCredentials(DirectoryError):
    """The login or the password is wrong."""


class AccountLocked(DirectoryError):
    """The password policy locked the account after failed logins."""


class PasswordExpired(DirectoryError):
    """The password is right but expired, or must be changed after an administrator set it.

    `must_change` says it is the latter (OpenLDAP's pwdReset, AD's pwdLastSet = 0). For an expired
    one, `grace_remaining` is the number of grace logins left after this one and `bound` says
    whether the bind itself succeeded (a grace login) or was refused (none left).
    """

    def __init__(self, account, grace_remaining: int, bound: bool, must_change: bool = False):
        super().__init__("password must be changed" if must_change else "password expired")
        self.account = account
        self.grace_remaining = grace_remaining
        self.bound = bound
        self.must_change = must_change


class PasswordRejected(DirectoryError):
    """The directory refused a new password; `reason` is a code the UI translates.

    `details` carries the directory's own rules where it says them (AD: the domain's minimum
    length, history length, minimum age, complexity), so the sentence can name them.
    """

    def __init__(self, reason: str, details: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.details = dict(details or {})


class AccountChanged(DirectoryError):
    """The password changed between reading the account and writing it (a link used twice at once)."""


class AmbiguousAccount(DirectoryError):
    """Two or more accounts match one identifier: a data fault, never resolved by guessing."""

    def __init__(self, dns):
        super().__init__("ambiguous account")
        self.dns = tuple(dns)


# busy, unavailable, other: the server is there but cannot serve now.
UNAVAILABLE_RESULTS = (51, 52, 80)


def raise_if_unavailable(result: dict) -> None:
    """Raise DirectoryUnavailable if an LDAP result says the server cannot serve now."""
    if result.get("result") in UNAVAILABLE_RESULTS:
        raise DirectoryUnavailable(result.get("description") or "unavailable")
