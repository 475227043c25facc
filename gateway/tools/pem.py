"""Reading the PEM files a user names: a file of the wrong kind is one line saying what it holds.

A missing or unreadable file is the `OSError` of reading it (said by `tools.exits`).
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from gateway.tools.exits import CommandError


def certificates(path: Path) -> list[x509.Certificate]:
    """The certificates in `path`, in order (at least one)."""
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError:
        raise CommandError(f"{path} holds no PEM certificate") from None


def private_key(path: Path, *, hint: str) -> PrivateKeyTypes:
    """The unencrypted private key in `path`; `hint` says which file is wanted instead."""
    data = path.read_bytes()
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's word for a key that needs a password
        raise CommandError(f"{path} is encrypted: give an unencrypted private key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CommandError(f"{path} {_holds(data)}, not a private key: {hint}") from None


def _holds(data: bytes) -> str:
    try:
        serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        pass
    else:
        return "holds a public key"
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        return "is not a PEM private key"
    return "holds a certificate"
