"""OpenLDAP's password-policy response control (draft-behera-ldap-password-policy) and its refusal codes.

ldap3 hands the control's value back raw; this decodes it into a PolicyResponse. The codes map to
the reasons pwdrst.messages.REFUSALS turns into sentences.
"""

from dataclasses import dataclass

from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, namedval, tag, univ

PPOLICY_OID = "1.3.6.1.4.1.42.2.27.8.5.1"

# ppolicy error codes (section 6.2) and the reasons they map to.
PPOLICY_ERRORS = {
    0: "expired",
    1: "locked",
    2: "change_after_reset",
    3: "change_not_allowed",
    4: "must_supply_old",
    5: "insufficient_quality",
    6: "too_short",
    7: "too_young",
    8: "in_history",
}


class _PolicyWarning(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType(
            "timeBeforeExpiration",
            univ.Integer().subtype(implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 0)),
        ),
        namedtype.NamedType(
            "graceAuthNsRemaining",
            univ.Integer().subtype(implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1)),
        ),
    )


class _PolicyError(univ.Enumerated):
    namedValues = namedval.NamedValues(*((name, code) for code, name in PPOLICY_ERRORS.items()))


class _PolicyResponse(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType(
            "warning",
            _PolicyWarning().subtype(explicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 0)),
        ),
        namedtype.OptionalNamedType(
            "error",
            _PolicyError().subtype(implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1)),
        ),
    )


@dataclass(frozen=True)
class PolicyResponse:
    """The decoded password-policy response control."""

    error: int | None = None
    time_before_expiration: int | None = None
    grace_remaining: int | None = None

    @property
    def reason(self) -> str | None:
        """Return the refusal reason of the error code, if there is one."""
        return None if self.error is None else PPOLICY_ERRORS.get(self.error, "rejected")


def decode_policy_control(value: bytes | None) -> PolicyResponse:
    """Decode the BER value of a password-policy response control (ldap3 leaves it raw)."""
    if not value:
        return PolicyResponse()
    try:
        decoded, _ = ber_decoder.decode(value, asn1Spec=_PolicyResponse())
    except PyAsn1Error:
        return PolicyResponse()
    error = int(decoded["error"]) if decoded["error"].isValue else None
    expiry = grace = None
    warning = decoded["warning"]
    if warning.isValue:
        name = warning.getName()
        if name == "timeBeforeExpiration":
            expiry = int(warning[name])
        elif name == "graceAuthNsRemaining":
            grace = int(warning[name])
    return PolicyResponse(error, expiry, grace)


def policy_of(result: dict) -> PolicyResponse:
    """Return the password-policy control of an LDAP result, decoded."""
    control = (result.get("controls") or {}).get(PPOLICY_OID)
    return decode_policy_control(control["value"] if control else None)
