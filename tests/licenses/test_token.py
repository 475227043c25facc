"""The token profile: pre-parse checks, the signature check through pyjwt (held against bare
`jwt.decode`), times and claims, pure."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.licenses.keys import parse_jwks
from gateway.licenses.token import (
    CHINA_TZ,
    LICENSE_TOKEN_TYPE,
    MAX_TOKEN_BYTES,
    REQUIRED_LICENSE_CLAIMS,
    LicenseInfo,
    TokenRejected,
    Verdict,
    _translate,
    check_times,
    encode_compact,
    jwk_thumbprint,
    license_claims,
    parse_license_claims,
    read_unverified,
    region_of_issuer,
    verify_signature,
)

KID = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z = 08:00 in China


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def compact(header: Any, payload: Any = None, signature: str = "c2ln") -> str:
    header_text = header if isinstance(header, str) else json.dumps(header)
    payload_text = json.dumps({"iss": "tongban:region:330000"} if payload is None else payload)
    return f"{b64(header_text)}.{b64(payload_text)}.{signature}"


GOOD_HEADER = {"alg": "EdDSA", "typ": LICENSE_TOKEN_TYPE, "kid": KID}


def info(**changes: Any) -> LicenseInfo:
    fields: dict[str, Any] = {
        "identifier": "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F",
        "type_code": "11100000000013338W032",
        "number": "2430599",
        "issuing_agency_code": "11220000013544541J",
        "valid_from": date(2026, 1, 1),
        "valid_until": date(2026, 12, 31),
    }
    fields.update(changes)
    return LicenseInfo(**fields)


def claims(**changes: Any) -> dict[str, Any]:
    base = license_claims(
        region_code="330000",
        audience="tongban-gateway",
        holder_id_type="111",
        holder_id="110105199003071239",
        token_id="6f1c5a1e-2b7d-4c55-9d0a-0c9f4c0a7b11",
        issued_at=NOW,
        not_before=NOW,
        expires_at=NOW + 86400,
        license=info(),
        status_index=7,
    )
    base.update(changes)
    return base


# -- thumbprints ---------------------------------------------------------------------------


def test_thumbprint_matches_rfc_8037_appendix_a3() -> None:
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(jwk) == KID
    assert jwk_thumbprint({**jwk, "kid": "ignored", "alg": "EdDSA"}) == KID


def test_thumbprint_refuses_unknown_types_and_missing_members() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        jwk_thumbprint({"kty": "RSA", "n": "x", "e": "AQAB"})
    with pytest.raises(ValueError, match="'y'"):
        jwk_thumbprint({"kty": "EC", "crv": "P-256", "x": "AA"})


# -- pre-parse checks ------------------------------------------------------------------------


def test_a_well_formed_token_reads() -> None:
    token = read_unverified(compact(GOOD_HEADER), expected_type=LICENSE_TOKEN_TYPE)
    assert (token.header.alg, token.header.kid) == ("EdDSA", KID)
    assert token.payload["iss"] == "tongban:region:330000"


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("x" * (MAX_TOKEN_BYTES + 1), "16 KiB"),
        (compact(GOOD_HEADER) + "é", "not ASCII"),
        ("abc.def", "three"),
        ("a.b.c.d", "three"),
        (compact(GOOD_HEADER, signature=""), "signature is empty"),
        (compact(GOOD_HEADER, signature="a+b/"), "signature is empty or not base64url"),
        (compact(GOOD_HEADER, signature="c2ln="), "signature is empty or not base64url"),
        (compact(GOOD_HEADER, signature="AB"), "signature is not canonical"),
        (compact(GOOD_HEADER, signature="AAB"), "signature is not canonical"),
        (compact(GOOD_HEADER, signature="AAAAA"), "signature is not canonical"),
        (compact(GOOD_HEADER).replace(".", "..", 1), "three"),
        (compact("not json"), "header is not base64url-encoded JSON"),
        (compact([1, 2]), "header is not a JSON object"),
        (compact('{"alg":"EdDSA","alg":"ES256","typ":"license+jwt","kid":"k"}'), "JSON"),
        (compact('{"alg":NaN,"typ":"license+jwt","kid":"k"}'), "JSON"),
        (compact({**GOOD_HEADER, "cty": "JWT"}), "other than alg, typ and kid"),
        (compact({**GOOD_HEADER, "typ": "JWT"}), "typ"),
        (compact({"alg": "EdDSA", "kid": KID}), "typ"),
        (compact({**GOOD_HEADER, "typ": "statuslist+jwt"}), "typ"),
        (compact({"typ": LICENSE_TOKEN_TYPE, "kid": KID}), "no algorithm"),
        (compact({**GOOD_HEADER, "alg": 5}), "no algorithm"),
        (compact({**GOOD_HEADER, "alg": ""}), "no algorithm"),
        (compact({**GOOD_HEADER, "alg": "<script>" + "A" * 40}), "not a JOSE algorithm"),
        (compact({**GOOD_HEADER, "alg": "A" * 33}), "not a JOSE algorithm"),
        (compact({**GOOD_HEADER, "kid": 7}), "kid"),
        (compact({"alg": "EdDSA", "typ": LICENSE_TOKEN_TYPE}), "kid"),
        (compact({**GOOD_HEADER, "kid": "k" * 129}), "kid"),
        (compact({**GOOD_HEADER, "kid": "A" * 2000}), "header is too long"),
        (compact(GOOD_HEADER, payload=[1]), "payload is not a JSON object"),
        (compact(GOOD_HEADER).replace(".", ".!!", 1), "payload is empty or not base64url"),
    ],
)
def test_malformed_tokens_are_refused_before_any_verification(token: str, words: str) -> None:
    with pytest.raises(TokenRejected, match=words) as caught:
        read_unverified(token, expected_type=LICENSE_TOKEN_TYPE)
    assert caught.value.verdict is Verdict.MALFORMED


@pytest.mark.parametrize("member", ["jku", "x5u", "jwk", "x5c", "crit", "b64"])
def test_headers_that_bring_their_own_keys_or_extensions_are_refused(member: str) -> None:
    header = {**GOOD_HEADER, member: ["b64"] if member == "crit" else "https://evil.example/k"}
    with pytest.raises(TokenRejected, match=member):
        read_unverified(compact(header), expected_type=LICENSE_TOKEN_TYPE)


@pytest.mark.parametrize(
    "kid",
    ["../../etc/passwd", "..%2f..", "a'b", 'a"b', "1; DROP TABLE keys;--", "' OR '1'='1", "", " "],
)
def test_kids_with_path_quote_or_sql_characters_are_refused(kid: str) -> None:
    with pytest.raises(TokenRejected, match="kid"):
        read_unverified(compact({**GOOD_HEADER, "kid": kid}), expected_type=LICENSE_TOKEN_TYPE)


def test_deeply_nested_payload_is_malformed_not_a_crash() -> None:
    token = f"{b64(json.dumps(GOOD_HEADER))}.{b64('[' * 5000)}.c2ln"
    with pytest.raises(TokenRejected):
        read_unverified(token, expected_type=LICENSE_TOKEN_TYPE)


@pytest.mark.parametrize(
    ("iss", "region"),
    [
        ("tongban:region:330000", "330000"),
        ("tongban:region:33000", None),
        ("tongban:region:330000:status", None),
        ("tongban:region:33000a", None),
        (330000, None),
        (None, None),
    ],
)
def test_region_of_issuer(iss: object, region: str | None) -> None:
    assert region_of_issuer(iss) == region


# -- the pyjwt boundary ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def signed(key: Ed25519PrivateKey, payload: dict[str, Any], **header: Any) -> str:
    return encode_compact({**GOOD_HEADER, **header}, payload, key.sign)


def prepared(public: Ed25519PublicKey | ec.EllipticCurvePublicKey) -> jwt.PyJWK:
    """The key as the gateway prepares it from a province's JWKS (`keys.parse_jwks`)."""
    if isinstance(public, Ed25519PublicKey):
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(public.public_bytes_raw())}
    else:
        numbers = public.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64(numbers.x.to_bytes(32, "big")),
            "y": b64(numbers.y.to_bytes(32, "big")),
        }
    jwk["kid"] = jwk_thumbprint(jwk)
    keys, rejected = parse_jwks("330000", json.dumps({"keys": [jwk]}))
    assert rejected == 0
    return keys[jwk["kid"]].jwk


def test_encode_compact_is_a_standard_jws(key: Ed25519PrivateKey) -> None:
    token = signed(key, claims())
    decoded = jwt.decode_complete(
        token,
        key.public_key(),
        algorithms=["EdDSA"],
        audience="tongban-gateway",
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert decoded["header"] == GOOD_HEADER
    assert decoded["payload"] == claims()


def serving(
    token: str, key: jwt.PyJWK, *, audience: str | None, require: Sequence[str]
) -> Mapping[str, Any]:
    """The serving path: the profile's pre-checks, then pyjwt's signature check."""
    unverified = read_unverified(token, expected_type=LICENSE_TOKEN_TYPE)
    return verify_signature(unverified, key, audience=audience, require=require)


_REFERENCE_VERDICTS: tuple[tuple[type[jwt.PyJWTError], Verdict], ...] = (
    (jwt.InvalidSignatureError, Verdict.BAD_SIGNATURE),
    (jwt.InvalidAlgorithmError, Verdict.BAD_SIGNATURE),
    (jwt.PyJWTError, Verdict.MALFORMED),
)


def bare_pyjwt(
    token: str, key: jwt.PyJWK, *, audience: str | None, require: Sequence[str]
) -> Mapping[str, Any]:
    """The reference: bare `jwt.decode` with the key's one algorithm and the options the
    profile implies (times off: they are judged with the injected clock)."""
    try:
        return jwt.decode(
            token,
            key=key.key,
            algorithms=[key.algorithm_name],
            audience=audience,
            options={
                "require": list(require),
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "strict_aud": audience is not None,
            },
        )
    except jwt.PyJWTError as exc:
        verdict = next(v for kind, v in _REFERENCE_VERDICTS if isinstance(exc, kind))
        raise TokenRejected(verdict, str(exc)) from None


Decode = Callable[..., Mapping[str, Any]]
BOTH = pytest.mark.parametrize("decode", [serving, bare_pyjwt], ids=["serving", "pyjwt"])


@BOTH
def test_a_good_token_returns_its_claims(key: Ed25519PrivateKey, decode: Decode) -> None:
    payload = decode(
        signed(key, claims()),
        prepared(key.public_key()),
        audience="tongban-gateway",
        require=REQUIRED_LICENSE_CLAIMS,
    )
    assert payload["sub"] == "110105199003071239"


@BOTH
def test_the_signature_check_ignores_the_wall_clock(key: Ed25519PrivateKey, decode: Decode) -> None:
    # Long expired by the wall clock: time is judged by check_times with the injected clock.
    token = signed(key, claims(iat=1000, nbf=1000, exp=2000))
    payload = decode(token, prepared(key.public_key()), audience="tongban-gateway", require=["exp"])
    assert payload["exp"] == 2000


@BOTH
def test_a_bad_signature_is_bad_signature(key: Ed25519PrivateKey, decode: Decode) -> None:
    token = signed(key, claims())
    tampered = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    with pytest.raises(TokenRejected) as caught:
        decode(
            tampered,
            prepared(key.public_key()),
            audience="tongban-gateway",
            require=REQUIRED_LICENSE_CLAIMS,
        )
    assert caught.value.verdict is Verdict.BAD_SIGNATURE


@BOTH
def test_a_signed_payload_that_is_not_json_is_malformed(
    key: Ed25519PrivateKey, decode: Decode
) -> None:
    signing_input = f"{b64(json.dumps(GOOD_HEADER))}.{b64('not json')}"
    token = f"{signing_input}.{b64(key.sign(signing_input.encode()))}"
    with pytest.raises(TokenRejected) as caught:
        decode(token, prepared(key.public_key()), audience=None, require=())
    assert caught.value.verdict is Verdict.MALFORMED


@BOTH
@pytest.mark.parametrize("missing", ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"])
def test_every_required_claim_is_required(
    key: Ed25519PrivateKey, missing: str, decode: Decode
) -> None:
    payload = claims()
    del payload[missing]
    with pytest.raises(
        TokenRejected, match=f"'{missing}'" if decode is serving else None
    ) as caught:
        decode(
            signed(key, payload),
            prepared(key.public_key()),
            audience="tongban-gateway",
            require=REQUIRED_LICENSE_CLAIMS,
        )
    assert caught.value.verdict is Verdict.MALFORMED


@BOTH
@pytest.mark.parametrize("aud", ["someone-else", ["tongban-gateway", "x"], ["tongban-gateway"]])
def test_audience_must_match_exactly(key: Ed25519PrivateKey, aud: object, decode: Decode) -> None:
    with pytest.raises(TokenRejected, match="audience" if decode is serving else None) as caught:
        decode(
            signed(key, claims(aud=aud)),
            prepared(key.public_key()),
            audience="tongban-gateway",
            require=REQUIRED_LICENSE_CLAIMS,
        )
    assert caught.value.verdict is Verdict.MALFORMED


@BOTH
def test_another_algorithm_than_the_keys_is_refused(key: Ed25519PrivateKey, decode: Decode) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenRejected) as caught:
        decode(
            signed(key, claims()),
            prepared(p256.public_key()),
            audience="tongban-gateway",
            require=REQUIRED_LICENSE_CLAIMS,
        )
    assert caught.value.verdict is Verdict.BAD_SIGNATURE


def test_a_key_is_bound_to_its_own_algorithm(key: Ed25519PrivateKey) -> None:
    # The algorithm is the key's, fixed when the key is prepared: an Ed25519 key cannot be
    # prepared for ES256, and a prepared key never verifies with the header's choice.
    ed = prepared(key.public_key())
    with pytest.raises(jwt.PyJWTError):
        jwt.PyJWK(ed._jwk_data, "ES256")
    token = signed(key, claims(), alg="ES256")
    with pytest.raises(TokenRejected, match="not the key's") as caught:
        serving(token, ed, audience="tongban-gateway", require=REQUIRED_LICENSE_CLAIMS)
    assert caught.value.verdict is Verdict.BAD_SIGNATURE


def test_pyjwts_errors_become_verdicts_in_one_place() -> None:
    said = "pyjwt's own words, which may quote the key"
    cases = {
        jwt.InvalidSignatureError(said): Verdict.BAD_SIGNATURE,
        jwt.InvalidAlgorithmError(said): Verdict.BAD_SIGNATURE,
        jwt.InvalidKeyError(said): Verdict.UNKNOWN_KEY,
        jwt.DecodeError(said): Verdict.MALFORMED,
        jwt.InvalidTokenError(said): Verdict.MALFORMED,
    }
    for error, verdict in cases.items():
        rejected = _translate(error)
        assert rejected.verdict is verdict
        assert said not in rejected.detail


# -- the profile refuses what it forbids; otherwise it accepts exactly what pyjwt accepts ----

_ABSENT = object()
_EC_KEY = ec.generate_private_key(ec.SECP256R1())
_ED_KEY = Ed25519PrivateKey.generate()
_OTHER_ED_KEY = Ed25519PrivateKey.generate()
_PREPARED = {"EdDSA": prepared(_ED_KEY.public_key()), "ES256": prepared(_EC_KEY.public_key())}
Sign = Callable[[bytes], bytes]


def _es256(message: bytes) -> bytes:
    r, s = decode_dss_signature(_EC_KEY.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _compact_text(header: str, payload: str, sign: Sign) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def _padded(token: str, index: int) -> str:
    """`token` with its segment `index` padded with `=` (pyjwt strips correct padding; a
    segment that needs none gets one `=` all the same)."""
    segments = token.split(".")
    segments[index] += "=" * (-len(segments[index]) % 4 or 1)
    return ".".join(segments)


def _padded_payload(header: dict[str, Any], payload: dict[str, Any], sign: Sign) -> str:
    """A token signed over a padded payload segment."""
    for filler in ("", "x", "xx"):
        head, body = b64(json.dumps(header)), b64(json.dumps({**payload, "x": filler}))
        if len(body) % 4:
            signing_input = f"{head}.{body}" + "=" * (-len(body) % 4)
            return f"{signing_input}.{b64(sign(signing_input.encode()))}"
    raise AssertionError("unreachable: one of three lengths needs padding")


# Each turns (header, payload, sign) into a token the profile forbids; all of them with a good
# signature are tokens pyjwt's decode accepts (test_pyjwt_accepts_what_the_profile_forbids).
FORBIDDEN: dict[str, Callable[[dict[str, Any], dict[str, Any], Sign], str]] = {
    "typ JWT": lambda h, p, sign: encode_compact({**h, "typ": "JWT"}, p, sign),
    "no typ": lambda h, p, sign: encode_compact(
        {k: v for k, v in h.items() if k != "typ"}, p, sign
    ),
    "no kid": lambda h, p, sign: encode_compact(
        {k: v for k, v in h.items() if k != "kid"}, p, sign
    ),
    "kid with a path": lambda h, p, sign: encode_compact({**h, "kid": "../k"}, p, sign),
    "cty member": lambda h, p, sign: encode_compact({**h, "cty": "JWT"}, p, sign),
    "jku member": lambda h, p, sign: encode_compact({**h, "jku": "https://evil.example"}, p, sign),
    "jwk member": lambda h, p, sign: encode_compact({**h, "jwk": {"kty": "OKP"}}, p, sign),
    "x5u member": lambda h, p, sign: encode_compact({**h, "x5u": "https://evil.example"}, p, sign),
    "x5c member": lambda h, p, sign: encode_compact({**h, "x5c": ["MIIB"]}, p, sign),
    "crit b64": lambda h, p, sign: encode_compact({**h, "b64": True, "crit": ["b64"]}, p, sign),
    "duplicate header member": lambda h, p, sign: _compact_text(
        json.dumps(h)[:-1] + f', "alg": {json.dumps(h["alg"])}}}', json.dumps(p), sign
    ),
    "duplicate claim": lambda h, p, sign: _compact_text(
        json.dumps(h), '{"holder_id_type": "001", ' + json.dumps(p)[1:], sign
    ),
    "NaN claim": lambda h, p, sign: _compact_text(
        json.dumps(h), json.dumps({**p, "x": float("nan")}), sign
    ),
    "padded signature": lambda h, p, sign: _padded(encode_compact(h, p, sign), 2),
    "padded payload": _padded_payload,
    "over 16 KiB": lambda h, p, sign: encode_compact(h, {**p, "x": "x" * MAX_TOKEN_BYTES}, sign),
}


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_pyjwt_accepts_what_the_profile_forbids(name: str) -> None:
    token = FORBIDDEN[name](GOOD_HEADER, claims(), _ED_KEY.sign)
    options: dict[str, Any] = {"audience": "tongban-gateway", "require": REQUIRED_LICENSE_CLAIMS}
    assert bare_pyjwt(token, _PREPARED["EdDSA"], **options)["iss"] == "tongban:region:330000"
    with pytest.raises(TokenRejected) as caught:
        serving(token, _PREPARED["EdDSA"], **options)
    assert caught.value.verdict is Verdict.MALFORMED


_CLAIM_VALUES = st.sampled_from(
    [_ABSENT, None, "", "tongban-gateway", "someone-else", ["tongban-gateway"], [], 0, 7, True]
)
_SIGNATURES = st.sampled_from(["good", "flipped", "short", "empty-ish", "long", "other-key", "der"])


def _outcome(call: Callable[[], Mapping[str, Any]]) -> object:
    try:
        return dict(call())
    except TokenRejected as rejected:
        return rejected.verdict


@settings(max_examples=300, deadline=None)
@given(
    header_alg=st.sampled_from(["EdDSA", "ES256"]),
    signing_alg=st.sampled_from(["EdDSA", "ES256"]),
    key_alg=st.sampled_from(["EdDSA", "ES256"]),
    changes=st.dictionaries(st.sampled_from(["aud", "sub", "jti", "exp", "iss"]), _CLAIM_VALUES),
    signature=_SIGNATURES,
    audience=st.sampled_from(["tongban-gateway", None]),
    require=st.sampled_from([REQUIRED_LICENSE_CLAIMS, (), ("exp", "aud")]),
    forbidden=st.one_of(st.none(), st.sampled_from(sorted(FORBIDDEN))),
)
def test_the_serving_path_refuses_what_the_profile_forbids_and_otherwise_agrees_with_pyjwt(
    *,
    header_alg: str,
    signing_alg: str,
    key_alg: str,
    changes: dict[str, object],
    signature: str,
    audience: str | None,
    require: Sequence[str],
    forbidden: str | None,
) -> None:
    payload = claims()
    for name, value in changes.items():
        if value is _ABSENT:
            payload.pop(name, None)
        else:
            payload[name] = value
    sign: Callable[[bytes], bytes] = _ED_KEY.sign if signing_alg == "EdDSA" else _es256

    def signer(message: bytes) -> bytes:
        good = sign(message)
        return {
            "good": good,
            "flipped": bytes([good[0] ^ 1]) + good[1:],
            "short": good[:-1],
            "empty-ish": b"\0",
            "long": good + b"\0",
            "other-key": _OTHER_ED_KEY.sign(message),
            "der": _EC_KEY.sign(message, ec.ECDSA(hashes.SHA256())),
        }[signature]

    header = {**GOOD_HEADER, "alg": header_alg}
    if forbidden is None:
        token = encode_compact(header, payload, signer)
    else:
        token = FORBIDDEN[forbidden](header, payload, signer)
    key = _PREPARED[key_alg]
    options: dict[str, Any] = {"audience": audience, "require": require}
    ours = _outcome(lambda: serving(token, key, **options))
    if forbidden is not None:
        assert ours is Verdict.MALFORMED
    else:
        assert ours == _outcome(lambda: bare_pyjwt(token, key, **options))


# -- times -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("times", "now", "leeway", "verdict"),
    [
        ((0, 0, 100), 50, 0, None),
        ((0, 0, 100), 100, 0, Verdict.EXPIRED),  # exp is exclusive
        ((0, 0, 100), 129, 30, None),
        ((0, 0, 100), 130, 30, Verdict.EXPIRED),
        ((0, 60, 100), 30, 30, None),
        ((0, 61, 100), 30, 30, Verdict.NOT_YET_VALID),
        ((61, 0, 100), 30, 30, Verdict.NOT_YET_VALID),
        ((0, 0, 100), 101, 300, None),
    ],
)
def test_check_times(
    times: tuple[float, float, float], now: float, leeway: float, verdict: Verdict | None
) -> None:
    if verdict is None:
        check_times(*times, now, leeway)
        return
    with pytest.raises(TokenRejected) as caught:
        check_times(*times, now, leeway)
    assert caught.value.verdict is verdict


# -- claims ----------------------------------------------------------------------------------


def test_claims_round_trip() -> None:
    parsed = parse_license_claims(claims())
    assert parsed.region_code == "330000"
    assert parsed.license == info()
    assert parsed.status_index == 7
    assert parsed.status_uri == "tongban:region:330000:status"
    assert "110105199003071239" not in repr(parsed)


def _license(**changes: Any) -> dict[str, Any]:
    lic: dict[str, Any] = dict(claims()["license"])
    lic.update(changes)
    return lic


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"iss": "tongban:region:3300"}, "iss"),
        ({"holder_id_type": "112"}, "holder_id_type"),
        ({"holder_id_type": 111}, "holder_id_type"),
        ({"exp": "tomorrow"}, "'exp' is not a NumericDate"),
        ({"exp": True}, "'exp' is not a NumericDate"),
        ({"nbf": -1}, "'nbf' is out of range"),
        ({"iat": 10.0**20}, "'iat' is out of range"),
        ({"nbf": NOW + 86400}, "nbf is not before its exp"),
        ({"sub": 110105199003071239}, "'sub'"),
        ({"sub": ""}, "'sub'"),
        ({"jti": None}, "'jti'"),
        ({"license": "x"}, "'license'"),
        ({"license": _license(identifier=None)}, "identifier"),
        ({"license": _license(type_code="1110000000001333W032")}, "21 characters"),
        ({"license": _license(valid_from="2026/01/01")}, "ISO date"),
        ({"license": _license(valid_until="20261231")}, "ISO date"),
        ({"license": _license(valid_from="2026-02-30")}, "ISO date"),
        ({"license": _license(valid_from="2027-01-01")}, "valid_from is after"),
        ({"license": _license(valid_from="2026-01-02")}, "outside the licence's validity"),
        ({"license": _license(valid_until="2026-01-01")}, "outside the licence's validity"),
        ({"status": {}}, "'status_list'"),
        ({"status": {"status_list": {"idx": -1, "uri": "x"}}}, "idx"),
        ({"status": {"status_list": {"idx": True, "uri": "x"}}}, "idx"),
        ({"status": {"status_list": {"idx": "3", "uri": "x"}}}, "idx"),
        (
            {"status": {"status_list": {"idx": 3, "uri": "tongban:region:370000:status"}}},
            "not its issuer's",
        ),
    ],
)
def test_malformed_claims(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(TokenRejected, match=words) as caught:
        parse_license_claims(claims(**changes))
    assert caught.value.verdict is Verdict.MALFORMED
    assert "110105199003071239" not in caught.value.detail


@settings(max_examples=200, deadline=None)
@given(
    valid_from=st.dates(date(1971, 1, 1), date(9000, 1, 1)),
    days=st.integers(0, 3660),
    nudge=st.sampled_from([-1, 0, 1]),
)
def test_token_validity_ends_at_the_licences_china_midnights(
    valid_from: date, days: int, nudge: int
) -> None:
    valid_until = valid_from + timedelta(days=days)
    first = int(datetime.combine(valid_from, datetime.min.time(), CHINA_TZ).timestamp())
    end = int(
        datetime.combine(valid_until + timedelta(days=1), datetime.min.time(), CHINA_TZ).timestamp()
    )
    lic = _license(valid_from=valid_from.isoformat(), valid_until=valid_until.isoformat())
    early = claims(license=lic, iat=first + nudge, nbf=first + nudge, exp=end)
    late = claims(license=lic, iat=first, nbf=first, exp=end + nudge)
    for changed, accepted in ((early, nudge >= 0), (late, nudge <= 0)):
        if accepted:
            parse_license_claims(changed)
        else:
            with pytest.raises(TokenRejected, match="outside the licence's validity"):
                parse_license_claims(changed)
