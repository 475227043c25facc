"""mTLS for grpc.aio: server credentials that reload from disk, client credentials, deny list.

Invariants, in plain words:

- Every server requires a client certificate signed by the configured CA
  (`require_client_auth`); there is no way to build server credentials without it here.
- Certificates are reloaded without a restart: before each new TLS handshake gRPC asks the
  reloader, which looks at the files' (inode, size, mtime) and re-reads them only when one
  changed. Connections already open keep the certificate they were made with.
- A reload never installs a broken configuration: unreadable files, or a key that does not
  match its certificate (a half-finished rotation), keep the previous configuration and are
  tried again at the next handshake.
- Python's gRPC checks no revocation lists. Revocation is the deny list of certificate
  serials, checked on every call (an open connection outlives any handshake-time check), as is
  the certificate's expiry for the same reason.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.security.authz import ALLOW, Decision, Denial, deny
from gateway.security.identity import Identity, Peer
from gateway.security.pki import PkiLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerTlsFiles:
    """The PEM files a TLS server needs."""

    ca_cert: Path
    """The CA (or bundle) client certificates must chain to."""
    cert: Path
    """The server's certificate."""
    key: Path
    """The server's private key."""

    @classmethod
    def from_layout(cls, layout: PkiLayout, *, region: str | None = None) -> ServerTlsFiles:
        """The gateway's files, or a region stub's when `region` is given."""
        pair = layout.gateway if region is None else layout.region_servers[region]
        return cls(layout.ca_cert, pair.cert, pair.key)


_Stamp = tuple[tuple[int, int, int], ...]


class CertificateReloader:
    """The certificate fetcher of `grpc.dynamic_ssl_server_credentials`.

    Called by gRPC (from its own threads) before every handshake; returns a new configuration
    when the files changed and are consistent, None to keep the current one.
    """

    def __init__(self, files: ServerTlsFiles) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._stamp: _Stamp | None = None
        self._rejected: _Stamp | None = None
        self._serial: int | None = None

    @property
    def serial(self) -> int | None:
        """The serial of the server certificate loaded last."""
        return self._serial

    def initial(self) -> grpc.ServerCertificateConfiguration:
        """The configuration to start with; raises when the files are unusable."""
        with self._lock:
            stamp = self._stat()
            config, serial = self._read()
            self._stamp, self._serial = stamp, serial
            return config

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            try:
                stamp = self._stat()
            except OSError:
                return None  # mid-rotation: a file is being replaced
            if stamp in (self._stamp, self._rejected):
                return None
            try:
                config, serial = self._read()
            except Exception as error:  # called from gRPC's threads: never let it escape
                self._rejected = stamp
                log.warning("TLS files not reloaded, keeping the current ones: %s", error)
                return None
            self._stamp, self._serial = stamp, serial
            log.info("TLS certificate reloaded, serial %x", serial)
            return config

    def _stat(self) -> _Stamp:
        stamps = []
        for path in (self._files.ca_cert, self._files.cert, self._files.key):
            st = os.stat(path)
            stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)

    def _read(self) -> tuple[grpc.ServerCertificateConfiguration, int]:
        ca_pem = self._files.ca_cert.read_bytes()
        cert_pem = self._files.cert.read_bytes()
        key_pem = self._files.key.read_bytes()
        x509.load_pem_x509_certificates(ca_pem)
        cert = x509.load_pem_x509_certificate(cert_pem)
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except TypeError as error:  # an encrypted key
            raise ValueError(str(error)) from error
        if key.public_key() != cert.public_key():
            raise ValueError(f"{self._files.key} does not match {self._files.cert}")
        config = grpc.ssl_server_certificate_configuration(
            [(key_pem, cert_pem)], root_certificates=ca_pem
        )
        return config, cert.serial_number


def server_credentials(
    files: PkiLayout | ServerTlsFiles, *, reload: bool = True
) -> grpc.ServerCredentials:
    """mTLS server credentials: a client certificate from the CA is required.

    With `reload`, certificate, key and CA are re-read when they change on disk, for every
    new connection. A `PkiLayout` means the gateway's own certificate.
    """
    if isinstance(files, PkiLayout):
        files = ServerTlsFiles.from_layout(files)
    if not reload:
        return grpc.ssl_server_credentials(
            [(files.key.read_bytes(), files.cert.read_bytes())],
            root_certificates=files.ca_cert.read_bytes(),
            require_client_auth=True,
        )
    reloader = CertificateReloader(files)
    return grpc.dynamic_ssl_server_credentials(
        reloader.initial(), reloader, require_client_authentication=True
    )


def channel_credentials(ca: Path, cert: Path, key: Path) -> grpc.ChannelCredentials:
    """Client credentials: trust `ca`, present `cert` with `key`.

    Read once: a client that must follow a rotation builds a new channel.
    """
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )


def parse_serial(value: str | int) -> int:
    """A certificate serial from config: an int, or hex as OpenSSL prints it (`3A:F1...`)."""
    if isinstance(value, int):
        serial = value
    else:
        text = value.strip().replace(":", "").lower().removeprefix("0x")
        if not text or any(c not in "0123456789abcdef" for c in text):
            raise ValueError(f"not a hexadecimal certificate serial: {value!r}")
        serial = int(text, 16)
    if serial <= 0:
        raise ValueError(f"certificate serials are positive: {value!r}")
    return serial


@dataclass(frozen=True, slots=True)
class DenyList:
    """Certificate serials that are refused even though their certificate verifies."""

    serials: frozenset[int] = frozenset()
    """The refused serials."""

    @classmethod
    def from_config(cls, values: Iterable[str | int]) -> DenyList:
        """From config values: ints, or hex strings with optional `0x` and colons."""
        return cls(frozenset(parse_serial(v) for v in values))

    def __contains__(self, serial: object) -> bool:
        return serial in self.serials

    def check(self, identity: Identity | Peer | None, *, now: datetime | None = None) -> Decision:
        """Whether a caller's certificate (or the edge proxy's) is still good: not denied, not
        expired.

        Run it on every call, before `authorize`.
        """
        if identity is None:
            return deny(Denial.NO_IDENTITY)
        if identity.serial in self.serials:
            return deny(Denial.CERTIFICATE_REVOKED)
        if identity.not_after is not None and (now or datetime.now(UTC)) >= identity.not_after:
            return deny(Denial.CERTIFICATE_EXPIRED)
        return ALLOW
