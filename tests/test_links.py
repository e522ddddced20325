"""Signed links without a server: what a token says, its purpose, its age, tampering, key rotation."""

import pytest
from itsdangerous.timed import TimestampSigner

from pwdrst.links import TokenExpired, TokenInvalid, make_token, read_token, same_state

HOUR = 3600


@pytest.fixture
def signing(pure_app):
    """The pure app's context, in which tokens are signed and read with its SECRET_KEY."""
    with pure_app.app_context():
        yield pure_app.config


@pytest.fixture
def signed_ago(monkeypatch):
    """Return signed_ago(seconds, ...): make_token(...) as if signed that many seconds ago."""
    real = TimestampSigner.get_timestamp

    def sign(seconds, *args, **kwargs):
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: real(self) - seconds)
        try:
            return make_token(*args, **kwargs)
        finally:
            monkeypatch.setattr(TimestampSigner, "get_timestamp", real)

    return sign


def tamper(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


def test_a_token_names_the_account_and_its_password_state(signing):
    token = read_token("reset", make_token("reset", "jkowalski", "fingerprint-1"), cap=HOUR)
    assert (token.purpose, token.login, token.fingerprint, token.max_age, token.extra) == (
        "reset",
        "jkowalski",
        "fingerprint-1",
        HOUR,
        None,
    )


def test_a_token_holds_nothing_readable_but_the_login(signing):
    token = make_token("recovery", "jkowalski", "fingerprint-1", extra="jan@private.example")
    assert "jan@private.example" not in token and "fingerprint-1" not in token
    assert read_token("recovery", token, cap=HOUR).extra == "jan@private.example"


def test_the_password_state_must_still_be_the_same(signing):
    token = read_token("reset", make_token("reset", "jkowalski", "fingerprint-1"), cap=HOUR)
    assert same_state(token, "fingerprint-1")
    assert not same_state(token, "fingerprint-2")


@pytest.mark.parametrize(
    "made_for, read_as", [("reset", "recovery"), ("recovery", "reset"), ("helpdesk", "reset"), ("reset", "helpdesk")]
)
def test_a_token_for_one_purpose_is_invalid_for_another(signing, made_for, read_as):
    with pytest.raises(TokenInvalid):
        read_token(read_as, make_token(made_for, "jkowalski", "fingerprint-1"), cap=HOUR)


def test_a_token_older_than_the_cap_has_expired_not_gone_invalid(signing, signed_ago):
    with pytest.raises(TokenExpired):
        read_token("reset", signed_ago(HOUR + 1, "reset", "jkowalski", "fingerprint-1"), cap=HOUR)
    assert read_token("reset", signed_ago(HOUR - 60, "reset", "jkowalski", "fingerprint-1"), cap=HOUR)


def test_a_token_may_carry_a_lifetime_shorter_than_the_cap(signing, signed_ago):
    young = signed_ago(590, "helpdesk", "jkowalski", "fingerprint-1", max_age=600)
    assert read_token("helpdesk", young, cap=4 * HOUR).max_age == 600
    with pytest.raises(TokenExpired):
        read_token("helpdesk", signed_ago(610, "helpdesk", "jkowalski", "fingerprint-1", max_age=600), cap=4 * HOUR)


def test_a_lifetime_over_the_cap_is_cut_to_the_cap(signing, signed_ago):
    token = signed_ago(HOUR + 1, "helpdesk", "jkowalski", "fingerprint-1", max_age=30 * 24 * HOUR)
    with pytest.raises(TokenExpired):
        read_token("helpdesk", token, cap=HOUR)


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(tamper, id="one-character-changed"),
        pytest.param(lambda t: t[: len(t) - 5], id="truncated"),
        pytest.param(lambda t: t.split(".")[0], id="payload-only"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "not-a-token-at-all", id="malformed"),
        pytest.param(lambda t: t + "ą", id="not-ascii"),
        pytest.param(lambda t: t + "A" * 1024, id="over-long"),
    ],
)
def test_a_spoiled_token_is_invalid(signing, spoil):
    with pytest.raises(TokenInvalid):
        read_token("reset", spoil(make_token("reset", "jkowalski", "fingerprint-1")), cap=HOUR)


def test_a_token_signed_with_another_key_is_invalid(signing):
    token = make_token("reset", "jkowalski", "fingerprint-1")
    signing["SECRET_KEY"] = "another-secret-key-0123456789abcdef0123"
    with pytest.raises(TokenInvalid):
        read_token("reset", token, cap=HOUR)


def test_after_a_key_rotation_old_tokens_still_verify_and_new_ones_use_the_new_key(signing):
    old_key = signing["SECRET_KEY"]
    old = make_token("reset", "jkowalski", "fingerprint-1")
    signing.update(SECRET_KEY="the-new-secret-key-0123456789abcdef01234", SECRET_KEY_FALLBACKS=[old_key])
    assert read_token("reset", old, cap=HOUR).login == "jkowalski"
    new = make_token("reset", "jkowalski", "fingerprint-1")
    signing.update(SECRET_KEY=old_key, SECRET_KEY_FALLBACKS=[])
    with pytest.raises(TokenInvalid):
        read_token("reset", new, cap=HOUR)
