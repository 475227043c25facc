"""Signed catalog publications: a compact JWS whose payload is the catalog JSON.

Invariants:
- A publication verifies only with a key from the gateway's own configuration, chosen by the
  header's `kid` (the standards body's name); keys are never taken from the token (`jwk`,
  `jku`, `x5u`, `x5c` headers are refused), and `crit` is refused.
- The algorithm is the one that fits the configured key (EdDSA for Ed25519, ES256 for P-256),
  never `none` and never an HMAC.
- `typ` must be `catalog+jws` (pyjwt does not check `typ`; we do).
- jwt and cryptography errors are translated here into `CatalogSignatureInvalid`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from gateway.errors import CatalogSignatureInvalid

TYP = "catalog+jws"
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
_FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c", "crit")

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def algorithm_for(key: PublicKey | PrivateKey) -> str:
    """The JOSE algorithm that fits a key."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError(f"unsupported curve {key.curve.name}: use Ed25519 or P-256")


def generate_private_key(algorithm: str = "EdDSA") -> PrivateKey:
    """A new signing key for a standards body."""
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unsupported algorithm {algorithm}: use EdDSA or ES256")


def private_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM of a private key (unencrypted: protect the file)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: PrivateKey | PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of a key's public half."""
    public = (
        key.public_key()
        if isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
        else key
    )
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: Path) -> PrivateKey:
    """Reads a PEM private key (Ed25519 or P-256)."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an Ed25519 or EC private key")
    algorithm_for(key)
    return key


def load_public_key(pem: bytes) -> PublicKey:
    """Reads a PEM public key (Ed25519 or P-256)."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("not an Ed25519 or EC public key")
    algorithm_for(key)
    return key


def sign_catalog(document: bytes, key: PrivateKey, publisher: str) -> str:
    """Signs catalog JSON bytes as a compact JWS for `publisher`."""
    return jwt.api_jws.encode(
        document, key, algorithm=algorithm_for(key), headers={"typ": TYP, "kid": publisher}
    )


def verify_catalog(signed: str, keys: Mapping[str, PublicKey]) -> tuple[str, bytes]:
    """Verifies a publication; returns (publisher, payload bytes)."""
    if not signed or len(signed) > MAX_DOCUMENT_BYTES * 2:
        raise CatalogSignatureInvalid("the signed document is empty or too large")
    if signed.count(".") != 2:
        raise CatalogSignatureInvalid("the signed document is not a compact JWS")
    try:
        header: dict[str, Any] = jwt.get_unverified_header(signed)
    except jwt.PyJWTError as exc:
        raise CatalogSignatureInvalid(f"unreadable JWS header: {exc}") from exc
    forbidden = [h for h in _FORBIDDEN_HEADERS if h in header]
    if forbidden:
        raise CatalogSignatureInvalid(f"header parameters not accepted: {', '.join(forbidden)}")
    if header.get("typ") != TYP:
        raise CatalogSignatureInvalid(f"typ must be {TYP!r}")
    publisher = header.get("kid")
    key = keys.get(publisher) if isinstance(publisher, str) else None
    if key is None or not isinstance(publisher, str):
        raise CatalogSignatureInvalid(
            "the publication is not signed by a known standards body",
            metadata={"publisher": str(publisher)[:64]},
        )
    algorithm = algorithm_for(key)
    if header.get("alg") != algorithm:
        raise CatalogSignatureInvalid(f"the algorithm must be {algorithm} for this publisher")
    try:
        payload = jwt.api_jws.decode(signed, key, algorithms=[algorithm])
    except jwt.PyJWTError as exc:
        raise CatalogSignatureInvalid(f"signature check failed: {exc}") from exc
    return publisher, payload


def load_public_keys(paths: Mapping[str, Path]) -> dict[str, PublicKey]:
    """Reads the configured standards bodies' public keys, by body name."""
    return {name: load_public_key(path.read_bytes()) for name, path in paths.items()}
