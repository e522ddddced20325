"""The forms without a server: which input each field refuses, and that password rules come from the policy."""

import pytest

from pwdrst.forms import IdentifierForm, IssueLinkForm, NewPasswordForm, RecoveryAddressForm, RemoveRecoveryForm

STRONG = "Zielony-parasol-nad-Wisłą-7"


@pytest.fixture
def errors(pure_app):
    """Return errors(form_class, data): the English error messages per field for data posted to the form."""

    def validate(form_class, data):
        with pure_app.test_request_context(method="POST", data=data, headers={"Accept-Language": "en"}):
            form = form_class(meta={"csrf": False})
            form.validate()
            return {name: [str(message) for message in messages] for name, messages in form.errors.items()}

    return validate


@pytest.mark.parametrize(
    "identifier, refused",
    [
        ("jkowalski", False),
        ("Jan.Kowalski@Student.Uni.Example", False),
        ("x" * 256, False),
        ("", True),
        ("   ", True),
        ("x" * 257, True),
    ],
)
def test_identifier_is_required_and_bounded(errors, identifier, refused):
    assert bool(errors(IdentifierForm, {"identifier": identifier})) is refused


@pytest.mark.parametrize(
    "address, message",
    [
        ("nowy.prywatny@mail.example", None),
        ("", "Enter an e-mail address."),
        ("not-an-address", "This does not look like an e-mail address."),
        ("a@b", "This does not look like an e-mail address."),
        ("a b@mail.example", "This does not look like an e-mail address."),
        ("x" * 250 + "@mail.example", "That is longer than any e-mail address."),
    ],
)
def test_recovery_address_must_look_like_one(errors, address, message):
    found = errors(RecoveryAddressForm, {"address": address, "current_password": "the-current-one"})
    assert found == ({"address": [message]} if message else {})


@pytest.mark.parametrize(
    "index, refused", [("0", False), ("20", False), ("21", True), ("-1", True), ("abc", True), ("", True)]
)
def test_recovery_address_to_remove_is_chosen_by_a_small_index(errors, index, refused):
    assert ("index" in errors(RemoveRecoveryForm, {"index": index})) is refused


def test_new_password_is_judged_by_the_policy_and_typed_twice(errors):
    assert errors(NewPasswordForm, {"new_password": STRONG, "confirm": STRONG}) == {}
    mismatch = errors(NewPasswordForm, {"new_password": STRONG, "confirm": STRONG + "x"})
    assert mismatch == {"confirm": ["The two passwords are not the same."]}
    weak = errors(NewPasswordForm, {"new_password": "krótkie", "confirm": "krótkie"})
    assert "Use at least 15 characters (this one has 7)." in weak["new_password"]


@pytest.mark.parametrize(
    "data, fields",
    [
        ({"delivery": "recovery"}, set()),
        ({"delivery": "address", "address": "przy.okienku@mail.example", "identity_checked": "y"}, set()),
        pytest.param({"delivery": "address", "identity_checked": "y"}, {"address"}, id="address-delivery-without-one"),
        ({"delivery": "address", "identity_checked": "y", "address": "  "}, {"address"}),
        ({"delivery": "address", "identity_checked": "y", "address": "not-an-address"}, {"address"}),
        ({"delivery": "address", "address": "przy.okienku@mail.example"}, {"identity_checked"}),
        ({"delivery": "shown"}, {"identity_checked"}),
        ({"delivery": "nonsense"}, {"delivery"}),
    ],
)
def test_a_link_handed_to_a_person_needs_the_identity_check(errors, data, fields):
    assert set(errors(IssueLinkForm, data)) == fields


def test_a_recovery_change_asks_for_the_current_password(errors):
    found = errors(RecoveryAddressForm, {"address": "nowy.prywatny@mail.example"})
    assert found == {"current_password": ["Enter your current password."]}
    assert "current_password" in errors(RemoveRecoveryForm, {"index": "0"})
