"""Calls through the edge proxy: the caller is the client certificate the edge forwards.

The edge proxy (Envoy, `deploy/envoy/`) terminates HTTPS from integrators, requiring a client
certificate of the federation, and calls the gateway over mTLS with its own certificate
(`spiffe://tongban/edge`), putting the certificate its client presented in the
`x-forwarded-client-cert` (XFCC) header. Invariants, in plain words:

- The header is honoured only on a connection whose TLS-verified client certificate is the
  edge proxy's. From anyone else it is refused (PERMISSION_DENIED, denial `NOT_THE_EDGE`),
  never ignored: a caller that sends it is misconfigured or trying to pass as someone else.
- The edge is trusted to forward, not to vouch: the forwarded certificate (the header's `Cert`,
  URL-encoded PEM) must chain to the federation's CA, be valid now and allow client
  authentication (`cryptography`'s RFC 5280 path validation), and then names its caller by the
  same rules as a direct caller's certificate (`identity.identity_from_certificate`). `By`,
  `Hash`, `Subject` and `URI` are descriptions, not relied on. Anything else is
  UNAUTHENTICATED, denial `FORWARDED_CERTIFICATE_INVALID`.
- Exactly one element with exactly one `Cert`: the edge replaces (SANITIZE_SET) whatever its
  client sent with one element describing its TLS peer, so several mean a header the edge did
  not write.
- The edge never calls as itself: its connection without the header has no identity.
- The CA file is the one the gateway's TLS trusts, re-read when it changes on disk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from gateway.security.identity import Identity, identity_from_certificate

HEADER = "x-forwarded-client-cert"
"""The metadata key the edge proxy forwards its client's certificate in."""

_CACHE_SIZE = 1024


class MalformedHeader(ValueError):
    """An XFCC value that does not follow Envoy's format."""


def parse_header(value: str) -> list[dict[str, list[str]]]:
    """Envoy's XFCC format: elements separated by `,`, each `key=value` pairs separated by
    `;`, a value optionally double-quoted (with `\\"` inside); keys are case-insensitive and
    may repeat (`URI`, `DNS`). Returns each element's values by lower-cased key."""
    elements: list[dict[str, list[str]]] = []
    element: dict[str, list[str]] = {}
    token: list[str] = []
    key: str | None = None
    quoted = escaped = False

    def end_pair() -> None:
        nonlocal key
        text = "".join(token)
        token.clear()
        if key is None:
            if text:
                raise MalformedHeader(f"a pair without '=': {text[:40]!r}")
            return
        element.setdefault(key, []).append(text)
        key = None

    for char in value:
        if escaped:
            token.append(char)
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            else:
                token.append(char)
        elif char == '"' and key is not None and not token:
            quoted = True
        elif char == "=" and key is None:
            key = "".join(token).strip().lower()
            token.clear()
            if not key:
                raise MalformedHeader("an empty key")
        elif char == ";":
            end_pair()
        elif char == ",":
            end_pair()
            elements.append(element)
            element = {}
        else:
            token.append(char)
    if quoted or escaped:
        raise MalformedHeader("an unterminated quoted value")
    end_pair()
    elements.append(element)
    return elements


class ForwardedCertificates:
    """Verifies the certificates the edge proxy forwards, against the federation's CA file.

    Thread-safe. A header value whose certificate verified is remembered (up to 1024, all
    forgotten when the CA changes): the edge writes the same value for the same client
    certificate, so a connection's later calls cost a lookup. Expiry is the deny list's to
    check on every call. A value that did not verify is checked again each time.
    """

    def __init__(self, ca_file: Path) -> None:
        self._ca_file = ca_file
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._store: Store | None = None
        self._verified: dict[str, Identity] = {}
        """Header values that verified, and whom they name."""

    def identity(self, values: Iterable[str], *, now: datetime | None = None) -> Identity | None:
        """The caller named by the XFCC header `values` (every occurrence of the header), or
        None when they are not exactly one element carrying one certificate that chains to the
        CA and names a caller."""
        values = list(values)
        if len(values) != 1:
            return None
        header = values[0]
        store = self._current_store()
        with self._lock:
            known = self._verified.get(header)
        if known is not None:
            return known
        try:
            elements = parse_header(header)
        except MalformedHeader:
            return None
        if len(elements) != 1 or len(elements[0].get("cert", [])) != 1:
            return None
        pem = unquote(elements[0]["cert"][0]).encode()
        identity = _verify(pem, store, now or datetime.now(UTC))
        if identity is not None:
            with self._lock:
                if len(self._verified) >= _CACHE_SIZE:
                    self._verified.clear()
                self._verified[header] = identity
        return identity

    def _current_store(self) -> Store:
        st = os.stat(self._ca_file)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp or self._store is None:
                cas = x509.load_pem_x509_certificates(self._ca_file.read_bytes())
                self._store, self._stamp = Store(cas), stamp
                self._verified.clear()
            return self._store


def _verify(pem: bytes, store: Store, now: datetime) -> Identity | None:
    try:
        leaf = x509.load_pem_x509_certificate(pem)
        verifier = PolicyBuilder().store(store).time(now).build_client_verifier()
        verifier.verify(leaf, [])
    except (ValueError, VerificationError):
        return None
    return identity_from_certificate(leaf.public_bytes(serialization.Encoding.PEM))
