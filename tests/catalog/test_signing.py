"""Tests for gateway.catalog.signing.

A publication verifies only with the configured key of the publisher its `kid` names, with the
algorithm that key implies. The attacks are built by hand (base64url segments, raw HMAC) so
that no library default can make them look harmless.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.catalog.signing import (
    MAX_DOCUMENT_BYTES,
    TYP,
    PrivateKey,
    PublicKey,
    algorithm_for,
    generate_private_key,
    load_private_key,
    load_public_key,
    load_public_keys,
    private_pem,
    public_pem,
    sign_catalog,
    verify_catalog,
)
from gateway.errors import CatalogSignatureInvalid

PUBLISHER = "national-standards-body"
DOCUMENT = json.dumps(
    {"kind": "tongban.catalog/v1", "version": "2025.1", "publisher": PUBLISHER, "名": "目录"},
    ensure_ascii=False,
).encode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact(header: dict[str, Any], payload: bytes, signature: bytes) -> str:
    return ".".join(
        [b64(json.dumps(header, separators=(",", ":")).encode()), b64(payload), b64(signature)]
    )


def sign_raw(header: dict[str, Any], payload: bytes, key: PrivateKey) -> str:
    """A compact JWS with exactly this header, signed with `key` (pyjwt would refuse some)."""
    head = b64(json.dumps(header, separators=(",", ":")).encode())
    body = b64(payload)
    algorithm = jwt.algorithms.get_default_algorithms()[algorithm_for(key)]
    signature = algorithm.sign(f"{head}.{body}".encode(), key)
    return f"{head}.{body}.{b64(signature)}"


@pytest.fixture(params=["EdDSA", "ES256"])
def key(request: pytest.FixtureRequest) -> PrivateKey:
    return generate_private_key(request.param)


def keys_for(key: PrivateKey) -> dict[str, PublicKey]:
    return {PUBLISHER: load_public_key(public_pem(key))}


def test_a_hand_built_token_with_the_right_header_verifies(key: PrivateKey) -> None:
    # The forging helper itself is sound: the same header and key give a valid token.
    header = {"alg": algorithm_for(key), "typ": TYP, "kid": PUBLISHER}
    assert verify_catalog(sign_raw(header, DOCUMENT, key), keys_for(key)) == (PUBLISHER, DOCUMENT)


def test_sign_then_verify_returns_publisher_and_exact_bytes(key: PrivateKey) -> None:
    signed = sign_catalog(DOCUMENT, key, PUBLISHER)
    header = jwt.get_unverified_header(signed)
    assert header["typ"] == TYP
    assert header["kid"] == PUBLISHER
    assert header["alg"] == algorithm_for(key)
    assert verify_catalog(signed, keys_for(key)) == (PUBLISHER, DOCUMENT)


def test_each_publisher_verifies_with_its_own_key() -> None:
    ed, ec_key = generate_private_key("EdDSA"), generate_private_key("ES256")
    keys = {
        "body-a": load_public_key(public_pem(ed)),
        "body-b": load_public_key(public_pem(ec_key)),
    }
    assert verify_catalog(sign_catalog(b"a", ed, "body-a"), keys) == ("body-a", b"a")
    assert verify_catalog(sign_catalog(b"b", ec_key, "body-b"), keys) == ("body-b", b"b")
    with pytest.raises(CatalogSignatureInvalid):
        verify_catalog(sign_catalog(b"a", ed, "body-b"), keys)


def _tamper_payload(signed: str) -> str:
    header, payload, signature = signed.split(".")
    data = json.loads(unb64(payload))
    data["version"] = "2099.1"
    return ".".join([header, b64(json.dumps(data, ensure_ascii=False).encode()), signature])


def _flip_signature(signed: str) -> str:
    header, payload, signature = signed.split(".")
    raw = bytearray(unb64(signature))
    raw[len(raw) // 2] ^= 0x01
    return ".".join([header, payload, b64(bytes(raw))])


def _swap_header(**changes: Any) -> Callable[[str], str]:
    def apply(signed: str) -> str:
        header, payload, signature = signed.split(".")
        data = json.loads(unb64(header))
        data.update(changes)
        return ".".join([b64(json.dumps(data).encode()), payload, signature])

    return apply


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_payload,
        _flip_signature,
        _swap_header(kid="someone-else"),
        _swap_header(typ="JWT"),
        lambda s: s.rsplit(".", 1)[0] + ".",  # signature stripped
        lambda s: s + "x",
    ],
    ids=["payload", "signature", "kid", "typ", "no-signature", "trailing"],
)
def test_any_edit_of_a_signed_publication_is_refused(
    key: PrivateKey, tamper: Callable[[str], str]
) -> None:
    signed = sign_catalog(DOCUMENT, key, PUBLISHER)
    with pytest.raises(CatalogSignatureInvalid) as caught:
        verify_catalog(tamper(signed), keys_for(key))
    assert caught.value.reason == "CATALOG_SIGNATURE_INVALID"


def test_a_publication_signed_with_another_key_is_refused(key: PrivateKey) -> None:
    other = generate_private_key(algorithm_for(key))
    with pytest.raises(CatalogSignatureInvalid, match="signature check failed"):
        verify_catalog(sign_catalog(DOCUMENT, other, PUBLISHER), keys_for(key))


def test_an_unknown_publisher_is_refused_and_named(key: PrivateKey) -> None:
    signed = sign_catalog(DOCUMENT, key, "provincial-bureau")
    with pytest.raises(CatalogSignatureInvalid) as caught:
        verify_catalog(signed, keys_for(key))
    assert caught.value.metadata == {"publisher": "provincial-bureau"}


@pytest.mark.parametrize("kid", [None, 7, ["national-standards-body"]])
def test_a_missing_or_non_string_kid_is_refused(key: PrivateKey, kid: object) -> None:
    header: dict[str, Any] = {"alg": algorithm_for(key), "typ": TYP}
    if kid is not None:
        header["kid"] = kid
    with pytest.raises(CatalogSignatureInvalid):
        verify_catalog(sign_raw(header, DOCUMENT, key), keys_for(key))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(key: PrivateKey, alg: str) -> None:
    forged = compact({"alg": alg, "typ": TYP, "kid": PUBLISHER}, DOCUMENT, b"")
    with pytest.raises(CatalogSignatureInvalid):
        verify_catalog(forged, keys_for(key))


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_with_the_public_key_pem_as_secret_is_refused(key: PrivateKey, alg: str) -> None:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    secret = public_pem(key)
    header = b64(json.dumps({"alg": alg, "typ": TYP, "kid": PUBLISHER}).encode())
    payload = b64(DOCUMENT)
    signature = hmac.new(secret, f"{header}.{payload}".encode(), digest).digest()
    with pytest.raises(CatalogSignatureInvalid):
        verify_catalog(f"{header}.{payload}.{b64(signature)}", keys_for(key))


def test_the_other_asymmetric_algorithm_is_refused() -> None:
    # An Ed25519 publisher's token claiming ES256, signed by an attacker's P-256 key.
    trusted = generate_private_key("EdDSA")
    attacker = generate_private_key("ES256")
    signed = sign_catalog(DOCUMENT, attacker, PUBLISHER)
    with pytest.raises(CatalogSignatureInvalid, match="algorithm must be EdDSA"):
        verify_catalog(signed, keys_for(trusted))


@pytest.mark.parametrize("param", ["jwk", "jku", "x5u", "x5c", "crit"])
def test_key_carrying_and_crit_headers_are_refused(key: PrivateKey, param: str) -> None:
    attacker = generate_private_key(algorithm_for(key))
    values: dict[str, Any] = {
        "jwk": json.loads(
            jwt.algorithms.get_default_algorithms()[algorithm_for(key)].to_jwk(
                attacker.public_key()
            )
        ),
        "jku": "https://attacker.example/keys.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIB"],
        "crit": ["exp"],
    }
    signed = jwt.api_jws.encode(
        DOCUMENT,
        key,  # even correctly signed: the header itself is not accepted
        algorithm=algorithm_for(key),
        headers={"typ": TYP, "kid": PUBLISHER, param: values[param]},
    )
    with pytest.raises(CatalogSignatureInvalid, match=param):
        verify_catalog(signed, keys_for(key))


@pytest.mark.parametrize("typ", [None, "JWT", "catalog+jwt", "CATALOG+JWS"])
def test_a_wrong_or_missing_typ_is_refused(key: PrivateKey, typ: str | None) -> None:
    headers: dict[str, Any] = {"kid": PUBLISHER, "typ": typ}
    signed = jwt.api_jws.encode(DOCUMENT, key, algorithm=algorithm_for(key), headers=headers)
    with pytest.raises(CatalogSignatureInvalid, match="typ"):
        verify_catalog(signed, keys_for(key))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a jws",
        "a.b",
        "a.b.c.d",
        "...",
        "!!!.???.###",
        b64(b"[1]") + "." + b64(b"x") + ".",
        json.dumps({"payload": "x", "signatures": []}),
        "x" * (MAX_DOCUMENT_BYTES * 2 + 1),
    ],
    ids=[
        "empty",
        "words",
        "two-parts",
        "four-parts",
        "dots",
        "garbage",
        "header-not-object",
        "json-serialization",
        "too-large",
    ],
)
def test_anything_that_is_not_a_compact_jws_is_refused(key: PrivateKey, text: str) -> None:
    with pytest.raises(CatalogSignatureInvalid):
        verify_catalog(text, keys_for(key))


def test_no_configured_keys_verifies_nothing(key: PrivateKey) -> None:
    with pytest.raises(CatalogSignatureInvalid):
        verify_catalog(sign_catalog(DOCUMENT, key, PUBLISHER), {})


# -- keys --------------------------------------------------------------------------------------


def test_algorithm_for_private_and_public_halves(key: PrivateKey) -> None:
    assert algorithm_for(key) == algorithm_for(key.public_key())
    assert algorithm_for(key) in ("EdDSA", "ES256")


def test_other_curves_and_algorithms_are_unsupported() -> None:
    with pytest.raises(ValueError, match="secp384r1"):
        algorithm_for(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ValueError, match="RS256"):
        generate_private_key("RS256")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError, match="not an Ed25519 or EC"):
        load_public_key(public_pem_of_rsa(rsa_key))


def public_pem_of_rsa(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_keys_survive_a_round_trip_through_pem_files(key: PrivateKey, tmp_path: Path) -> None:
    (tmp_path / "signing.pem").write_bytes(private_pem(key))
    (tmp_path / "nsb.pub.pem").write_bytes(public_pem(key))
    loaded = load_private_key(tmp_path / "signing.pem")
    keys = load_public_keys({PUBLISHER: tmp_path / "nsb.pub.pem"})
    assert set(keys) == {PUBLISHER}
    signed = sign_catalog(DOCUMENT, loaded, PUBLISHER)
    assert verify_catalog(signed, keys) == (PUBLISHER, DOCUMENT)
    assert public_pem(keys[PUBLISHER]) == public_pem(key)
    assert b"PRIVATE KEY" in private_pem(key)
    assert b"PRIVATE" not in public_pem(key)


def test_a_p384_private_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p384.pem"
    path.write_bytes(private_pem(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(ValueError, match="unsupported curve"):
        load_private_key(path)
