"""The CLI's calls to the gateway: the certificate it presents, checked before dialling, and
what a failed call means.

Invariants, in plain words:

- Never plaintext unless asked for (`--insecure`). Without `--ca/--cert/--key`, the identity's
  certificate comes from the federation's PKI (found as `tools.locate` says); when there is
  none, the command stops, saying where it looked and what points it elsewhere.
- The files are checked before dialling: the key is a private key and belongs to the
  certificate, the certificate is inside its validity window and chains to the CA file. The
  gateway's TLS handshake refuses such a certificate before any call could be answered
  `UNAUTHENTICATED` (Python's gRPC servers can only require a verified client certificate), so
  it is said here, by name, rather than seen as an outage.
- A failed call is either a refusal (the gateway answered with an error status: `Refused`) or
  the gateway was not reached (`UNAVAILABLE` or `DEADLINE_EXCEEDED` without a status from the
  gateway): a `CommandError` with `UNREACHABLE`, saying what the transport's words mean.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from grpc_status import rpc_status

from gateway.security.tls import channel_credentials
from gateway.tools import locate, pem
from gateway.tools.balancing import gateway_channel
from gateway.tools.exits import UNREACHABLE, CommandError, Refused


@dataclass(frozen=True, slots=True)
class ClientFiles:
    """The PEM files of the identity a command presents."""

    ca: Path
    """The CA the gateway's certificate, and this one, chain to."""
    cert: Path
    """The client certificate (and any intermediates after it)."""
    key: Path
    """Its private key."""


def client_files(
    *,
    role: str,
    name: str,
    chosen_by: str,
    ca: str | None,
    cert: str | None,
    key: str | None,
    pki_dir: str | None,
    env: Mapping[str, str],
    cwd: Path,
    now: datetime,
) -> ClientFiles:
    """The checked files to present as `role`/`name`: `ca`, `cert` and `key` if given (all
    three), else that identity's in the federation's PKI. `chosen_by` is the flag that named
    the identity, for the message when the PKI holds no certificate of it."""
    if cert or key or ca:
        if not (cert and key and ca):
            raise CommandError("--cert, --key and --ca go together")
        files = ClientFiles(Path(ca), Path(cert), Path(key))
    else:
        pki = locate.pki_dir(pki_dir, env, cwd)
        clients = pki / "clients"
        files = ClientFiles(
            pki / "ca.pem", clients / f"{role}-{name}.pem", clients / f"{role}-{name}.key"
        )
        if not files.cert.is_file():
            held = sorted(p.stem.replace("-", "/", 1) for p in clients.glob("*.pem"))
            raise CommandError(
                f"no certificate for {role}/{name} in {clients} (it holds "
                f"{', '.join(held) or 'none'}): check {chosen_by}, or point elsewhere with "
                f"--pki-dir, {locate.DATA_DIR_ENV} or --ca/--cert/--key"
            )
    check(files, now=now)
    return files


def check(files: ClientFiles, *, now: datetime) -> None:
    """Raises a `CommandError` naming what is wrong with `files`, if anything."""
    cas = pem.certificates(files.ca)
    chain = pem.certificates(files.cert)
    leaf = chain[0]
    key = pem.private_key(
        files.key, hint=f"give the key made with {files.cert.name} (the .key file beside it)"
    )
    if key.public_key() != leaf.public_key():
        raise CommandError(
            f"{files.key} is not the key of {files.cert}: give the key made with that "
            "certificate (the .key file beside it)"
        )
    if now >= leaf.not_valid_after_utc:
        raise CommandError(
            f"{files.cert} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: renew it "
            "(`tongban certs` renews the development PKI, as `tongban up` does at start) or ask "
            "its CA for a new one"
        )
    if now < leaf.not_valid_before_utc:
        raise CommandError(
            f"{files.cert} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: "
            "check this machine's clock"
        )
    verifier = PolicyBuilder().store(Store(cas)).time(now).build_client_verifier()
    try:
        verifier.verify(leaf, chain[1:])
    except VerificationError as error:
        raise CommandError(
            f"{files.cert} (issued by {_name(leaf.issuer)}) does not chain to the CA in "
            f"{files.ca} ({error}): the gateway would refuse it; present a certificate of this "
            "federation, or give the CA that issued it with --ca"
        ) from None


def _name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string()


@contextlib.asynccontextmanager
async def open_gateway(gateway: str, files: ClientFiles | None) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to `--gateway` (one address, or replicas: see `tools.balancing`): mTLS with
    `files`, plaintext when None. A call that fails inside is `Refused` or a `CommandError`
    (see the module's invariants)."""
    try:
        target, options = gateway_channel(gateway, tls=files is not None)
    except ValueError as error:
        raise CommandError(str(error)) from None
    channel = (
        grpc.aio.insecure_channel(target, options=options)
        if files is None
        else grpc.aio.secure_channel(
            target, channel_credentials(files.ca, files.cert, files.key), options=options
        )
    )
    async with channel:
        try:
            yield channel
        except grpc.aio.AioRpcError as error:
            raise failure(error, gateway, files) from None


def failure(
    error: grpc.aio.AioRpcError, gateway: str, files: ClientFiles | None
) -> Refused | CommandError:
    """What a failed call means (see the module's invariants)."""
    code = error.code()
    reached = code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    if reached or rpc_status.from_call(error) is not None:
        return Refused(error)
    return CommandError(unreached(code, error.details() or "", gateway, files), code=UNREACHABLE)


def unreached(code: grpc.StatusCode, details: str, gateway: str, files: ClientFiles | None) -> str:
    """Why the gateway at `gateway` was not reached, from the words of gRPC's transport."""
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"no answer from the gateway at {gateway} before the deadline: is it overloaded, or "
            "behind something that drops connections? (--gateway; apply: --timeout)"
        )
    if "Connection refused" in details:
        return (
            f"nothing listens at {gateway}: is the gateway running? (`tongban up` starts one; "
            "--gateway HOST:PORT names another)"
        )
    if "DNS resolution failed" in details:
        return f"cannot resolve the host of {gateway}: check --gateway"
    closed = "Socket closed" in details or "Connection reset" in details
    if files is None:
        if closed:
            return (
                f"the gateway at {gateway} closed the plaintext connection: it serves mTLS (as "
                "`tongban up` does), so drop --insecure and present a certificate"
            )
    elif "WRONG_VERSION_NUMBER" in details:
        return (
            f"the gateway at {gateway} does not speak TLS (a plaintext development gateway?): "
            "add --insecure to call it in plaintext"
        )
    elif "CERTIFICATE_VERIFY_FAILED" in details:
        return (
            f"the gateway at {gateway} presents a certificate that does not chain to the CA in "
            f"{files.ca}: give the CA of its federation (--ca, --pki-dir or "
            f"{locate.DATA_DIR_ENV})"
        )
    elif closed:
        issuer = _name(pem.certificates(files.cert)[0].issuer)
        return (
            f"the gateway at {gateway} ended the TLS handshake: it does not accept {files.cert} "
            f"(issued by {issuer}); present a certificate from the CA it trusts (its "
            "TONGBAN_TLS_CA)"
        )
    return f"the gateway at {gateway} is unavailable: {details}"
