"""The forms. Password rules live in policy.py; the validators here are thin wrappers around it."""

from flask import current_app
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, RadioField, SelectChoice, StringField
from wtforms.validators import (
    DataRequired,
    EqualTo,
    InputRequired,
    Length,
    NumberRange,
    Regexp,
    ValidationError,
)

from pwdrst.directory import MAX_IDENTIFIER_LENGTH as IDENTIFIER_MAX
from pwdrst.policy import check_password


def email_validators():
    """The checks an e-mail address field makes (a length bound and a plain shape)."""
    return [
        Length(max=254, message=_l("That is longer than any e-mail address.")),
        Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message=_l("This does not look like an e-mail address.")),
    ]


class IdentifierForm(FlaskForm):
    """A login or any university address."""

    identifier = StringField(
        _l("Login or university e-mail address"),
        validators=[
            DataRequired(_l("Enter your login or university e-mail address.")),
            Length(max=IDENTIFIER_MAX, message=_l("That is longer than any login or address.")),
        ],
    )


class LoginForm(IdentifierForm):
    """A login or address, and the password."""

    password = PasswordField(
        _l("Password"),
        validators=[
            DataRequired(_l("Enter your password.")),
            Length(max=1024, message=_l("That is longer than any password.")),
        ],
    )


class NewPasswordForm(FlaskForm):
    """A new password, twice, checked by the policy for the account it is for."""

    new_password = PasswordField(_l("New password"), validators=[DataRequired(_l("Enter a new password."))])
    confirm = PasswordField(
        _l("New password again"),
        validators=[
            DataRequired(_l("Enter the new password again.")),
            EqualTo("new_password", _l("The two passwords are not the same.")),
        ],
    )

    def __init__(self, *args, account=None, current=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.account = account
        self.current = current

    def validate_new_password(self, field):
        verdict = check_password(field.data or "", self.account, self.current)
        if not verdict.ok:
            field.errors += [p.message for p in verdict.problems[:-1]]
            raise ValidationError(verdict.problems[-1].message)


class ChangePasswordForm(NewPasswordForm):
    """The current password, then a new one twice."""

    current_password = PasswordField(
        _l("Current password"), validators=[DataRequired(_l("Enter your current password."))]
    )

    def validate_new_password(self, field):
        self.current = self.current_password.data
        super().validate_new_password(field)


def outside_address(address: str, account) -> bool:
    """Return whether address may serve for recovery: not the organisation's, not the account's own.

    The domains of the account's own addresses (and their subdomains) are the organisation's even
    when RECOVERY_FORBIDDEN_DOMAINS does not list them: such a mailbox fails with the account.
    """
    domain = address.rsplit("@", 1)[-1].lower()
    own = {a.rsplit("@", 1)[-1] for a in account.addresses} if account is not None else set()
    for forbidden in [*current_app.config["RECOVERY_FORBIDDEN_DOMAINS"], *own]:
        forbidden = forbidden.lower().lstrip(".")
        if domain == forbidden or domain.endswith("." + forbidden):
            return False
    return account is None or address.lower() not in {a.lower() for a in account.addresses}


def current_password_field():
    """Return the field that asks for the current password again before a sensitive change."""
    return PasswordField(
        _l("Current password"),
        validators=[
            DataRequired(_l("Enter your current password.")),
            Length(max=1024, message=_l("That is longer than any password.")),
        ],
    )


class RecoveryAddressForm(FlaskForm):
    """A private address for reset links, outside the organisation."""

    address = EmailField(
        _l("Recovery e-mail address"),
        validators=[DataRequired(_l("Enter an e-mail address.")), *email_validators()],
    )
    replace = BooleanField(_l("Replace my current recovery addresses with this one"))
    # Changing the means of recovery is a sensitive action: a stolen session alone must not do it.
    current_password = current_password_field()

    def __init__(self, *args, account=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.account = account

    def validate_address(self, field):
        if field.errors:  # not an address at all: that sentence is enough
            return
        if not outside_address(field.data.strip(), self.account):
            raise ValidationError(
                _l("Use a private address outside the university: it must work when your university mailbox does not.")
            )


class RemoveRecoveryForm(FlaskForm):
    """Remove one recovery address (chosen from the list, never typed)."""

    index = IntegerField(validators=[InputRequired(), NumberRange(min=0, max=20)])
    confirm = BooleanField(_l("I understand that I will not be able to reset my password myself"))
    current_password = current_password_field()

    def __init__(self, *args, account=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.account = account

    def validate_index(self, field):
        if self.account is not None and (field.data or 0) >= len(self.account.recovery_addresses):
            raise ValidationError("no such recovery address")

    def validate_confirm(self, field):
        if self.account is not None and len(self.account.recovery_addresses) == 1 and not field.data:
            raise ValidationError(_l("Tick the box to remove your last recovery address."))


class SearchForm(FlaskForm):
    """The helpdesk's one search field."""

    q = StringField(
        _l("Login, address or name"),
        validators=[
            DataRequired(_l("Type what to search for.")),
            Length(min=2, max=IDENTIFIER_MAX, message=_l("Type between 2 and 256 characters.")),
        ],
    )


class IssueLinkForm(FlaskForm):
    """How the helpdesk delivers a reset link."""

    delivery = RadioField(
        _l("Deliver the link"),
        choices=[
            SelectChoice("recovery", _l("Send it to the recovery address")),
            SelectChoice("address", _l("Send it to an address I checked")),
            SelectChoice("shown", _l("Show it once on this screen")),
        ],
        default="recovery",
        validators=[InputRequired(_l("Choose how to deliver the link."))],
    )
    address = EmailField(
        _l("Address (after checking the person's identity in person)"),
        # Not Optional(): it would end the chain before validate_address could require the address.
        validators=[Length(max=254, message=_l("That is longer than any e-mail address."))],
    )
    identity_checked = BooleanField(_l("I have checked the person's identity (an ID document, in person)"))

    def validate_address(self, field):
        if self.delivery.data != "address":
            return
        if not (field.data or "").strip():
            raise ValidationError(_l("Type the address to send the link to."))
        for check in email_validators():
            check(self, field)

    def validate_identity_checked(self, field):
        if self.delivery.data in ("address", "shown") and not field.data:
            raise ValidationError(_l("Confirm that you have checked the person's identity."))


class ButtonForm(FlaskForm):
    """A form that is only a button (and its CSRF token)."""
