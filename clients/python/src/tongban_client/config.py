"""How a client reaches the gateway: where, as whom, how long it waits, how it retries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class MutualTls:
    """The files of a platform's identity. The gateway knows a caller only by its client
    certificate (URI SAN `spiffe://tongban/region/{province}`); they are read once, when the
    client opens its channel."""

    ca: Path
    """The CA certificate that the gateway's certificate chains to (PEM)."""
    cert: Path
    """The platform's client certificate (PEM)."""
    key: Path
    """The client certificate's private key (PEM)."""
    server_name: str | None = None
    """The name to check the gateway's certificate for, when it is not the target's host."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of a call answered UNAVAILABLE, the only code retried (AIP-194). Each retry is
    the same request: a submission keeps its `request_id`, so it can never create a second
    application (AIP-155)."""

    max_attempts: int = 5
    """Attempts of one call in all, the first included."""
    initial_backoff: float = 0.2
    """Seconds: the first backoff's upper bound when the gateway sent no RetryInfo."""
    max_backoff: float = 5.0
    """Seconds: the cap of the doubling backoff without RetryInfo (full jitter below it)."""
    give_up_after: float = 30.0
    """Seconds since the first attempt after which no retry starts: a delay that would end
    later (the gateway's own included) raises the last error instead."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts: at least 1")
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ValueError("backoff: 0 < initial_backoff <= max_backoff")
        if self.give_up_after < 0:
            raise ValueError("give_up_after: not negative")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """A connection to one gateway. Build it with `mutual_tls` or, for a local gateway
    started with `--insecure`, `insecure`."""

    target: str
    """The gateway's `host:port` (any gRPC target)."""
    tls: MutualTls | None
    """The platform's mTLS identity; None is plaintext, which only an insecure (development)
    gateway accepts."""
    timeout: float = 10.0
    """Seconds each attempt of a call may take (its gRPC deadline), unless a call says
    otherwise."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """When calls answered UNAVAILABLE are tried again."""

    @classmethod
    def mutual_tls(
        cls,
        target: str,
        *,
        ca: str | Path,
        cert: str | Path,
        key: str | Path,
        server_name: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> ClientConfig:
        """A connection over mutual TLS, as every production gateway requires."""
        return cls(
            target,
            MutualTls(Path(ca), Path(cert), Path(key), server_name),
            timeout,
            retry or RetryPolicy(),
        )

    @classmethod
    def insecure(
        cls, target: str, *, timeout: float = 10.0, retry: RetryPolicy | None = None
    ) -> ClientConfig:
        """A plaintext connection, for trying things out against a local `--insecure` gateway."""
        return cls(target, None, timeout, retry or RetryPolicy())
