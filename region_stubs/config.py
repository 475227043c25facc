"""A region stub's configuration: built once from a str→str mapping, then passed explicitly.

`StubConfig.from_mapping` reads `TONGBAN_STUB_*` keys; `parse_args` lays command-line flags over
such a mapping (the process environment, when `main` passes it). Nothing else reads
`os.environ`.

    key (TONGBAN_STUB_ + …)         flag                            default
    REGION                          --region                        (required)
    HOST                            --host                          127.0.0.1
    PORT                            --port                          0 (any free port)
    DATA_DIR                        --data-dir                      (in memory)
    IMPLEMENTATION_LIST             --implementation-list           standards/implementations/…
    GATEWAY                         --gateway                       (no status reports)
    LICENSE_ALGORITHM               --license-algorithm             EdDSA (or ES256)
    SEED                            --seed                          (unseeded)
    GRACE_SECONDS                   --grace                         5
    UNAVAILABLE_FRACTION            --unavailable-fraction          0
    COMMIT_THEN_DROP_FRACTION       --commit-then-drop-fraction     0
    RESOURCE_EXHAUSTED_FRACTION     --resource-exhausted-fraction   0
    LATENCY_MS                      --latency-ms                    0
    LATENCY_JITTER_MS               --latency-jitter-ms             0
    PUSHBACK_MS                     --pushback-ms                   0
    HANG                            --hang                          false
    DOWN                            --down                          false
    TLS_CA                          --tls-ca                        (plaintext)
    TLS_CERT, TLS_KEY               --tls-cert, --tls-key           the stub's server certificate
    CLIENT_CERT, CLIENT_KEY         --client-cert, --client-key     its certificate for reports
    ACCEPT_AFTER_SECONDS            --accept-after                  (cases wait for DecideCase)
    BREAK                           --break                         (every rule kept)

With TLS_CA the stub serves mTLS (client certificates from that CA required) and reports to
the gateway over TLS with its region client certificate; all five files go together.
ACCEPT_AFTER_SECONDS makes the province accept every new case that many seconds after it was
delivered, and report it to GATEWAY, as a province's test system deciding by itself would.
BREAK names rules of the contract to break on purpose, comma-separated (`breaks.Break`): for
the conformance kit's own tests, never in a federation.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from region_stubs.breaks import Break, parse_breaks
from region_stubs.faults import Faults, FaultsInvalid
from region_stubs.issuer import SIGNER_FACTORIES

PREFIX = "TONGBAN_STUB_"
STANDARDS_DIR = Path(__file__).resolve().parent.parent / "standards"
"""The bundled data of the repository, where default implementation lists live."""

_PROVINCE = re.compile(r"[1-9][0-9]0000")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
_T = TypeVar("_T")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the key."""


@dataclass(frozen=True, slots=True)
class StubTls:
    """The PEM files of a stub that serves and calls over mTLS."""

    ca_cert: Path
    """The CA every party's certificate chains to."""
    cert: Path
    """The stub's server certificate."""
    key: Path
    """Its key."""
    client_cert: Path
    """The province's client certificate (`spiffe://tongban/region/{code}`), for reports."""
    client_key: Path
    """Its key."""


@dataclass(frozen=True, slots=True)
class StubConfig:
    """Everything a region stub needs to run."""

    region_code: str
    """The province this stub plays, a GB/T 2260 province code such as `440000`."""
    implementation_list: Path
    """The province's implementation list (`tongban.region-catalog/v1` JSON)."""
    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 0
    """Port to listen on; 0 picks a free one (announced once bound)."""
    data_dir: Path | None = None
    """Directory of the case store `region-{code}.sqlite3`; None keeps cases in memory."""
    gateway_address: str | None = None
    """`host:port` of the gateway's ApplicationService, for DecideCase reports; None = none."""
    license_algorithm: str = "EdDSA"
    """JWS algorithm of the stub's e-licence signing key."""
    faults: Faults = field(default_factory=Faults)
    """Fault-injection settings in force at start."""
    seed: int | None = None
    """Seed of the fault random generator; None seeds from the system."""
    grace: float = 5.0
    """Seconds in-flight calls may run on after a stop is requested."""
    tls: StubTls | None = None
    """mTLS files; None serves and reports in plaintext."""
    accept_after: float | None = None
    """Seconds after which every new case is accepted (and reported to the gateway); None:
    cases wait for DecideCase."""
    breaks: frozenset[Break] = frozenset()
    """Rules of the contract broken on purpose (`breaks`); empty in every federation."""

    @property
    def cases_path(self) -> Path | None:
        """The SQLite file of the case store, or None for an in-memory store."""
        if self.data_dir is None:
            return None
        return self.data_dir / f"region-{self.region_code}.sqlite3"

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> StubConfig:
        """Builds a config from `TONGBAN_STUB_*` keys; raises `ConfigError` naming a bad key."""
        reader = _Reader(mapping)
        region = reader.text("REGION")
        if region is None:
            raise ConfigError(f"{PREFIX}REGION is required")
        if not _PROVINCE.fullmatch(region):
            raise ConfigError(f"{PREFIX}REGION: {region!r} is not a province code like 440000")
        try:
            faults = Faults(
                unavailable_fraction=reader.number("UNAVAILABLE_FRACTION", float, 0.0),
                commit_then_drop_fraction=reader.number("COMMIT_THEN_DROP_FRACTION", float, 0.0),
                resource_exhausted_fraction=reader.number(
                    "RESOURCE_EXHAUSTED_FRACTION", float, 0.0
                ),
                latency_ms=reader.number("LATENCY_MS", int, 0),
                latency_jitter_ms=reader.number("LATENCY_JITTER_MS", int, 0),
                pushback_ms=reader.number("PUSHBACK_MS", int, 0),
                hang=reader.flag("HANG"),
                down=reader.flag("DOWN"),
            )
        except FaultsInvalid as e:
            raise ConfigError(f"fault settings: {e}") from None
        port = reader.number("PORT", int, 0)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{PREFIX}PORT: {port} is not a port number")
        grace = reader.number("GRACE_SECONDS", float, 5.0)
        if not (math.isfinite(grace) and grace >= 0):
            raise ConfigError(f"{PREFIX}GRACE_SECONDS: must be a non-negative number of seconds")
        data_dir = reader.text("DATA_DIR")
        listing = reader.text("IMPLEMENTATION_LIST")
        seed = reader.text("SEED")
        algorithm = reader.text("LICENSE_ALGORITHM") or "EdDSA"
        if algorithm not in SIGNER_FACTORIES:
            raise ConfigError(
                f"{PREFIX}LICENSE_ALGORITHM: {algorithm!r} is not one of {sorted(SIGNER_FACTORIES)}"
            )
        tls_names = ("TLS_CA", "TLS_CERT", "TLS_KEY", "CLIENT_CERT", "CLIENT_KEY")
        tls_paths = [reader.text(name) for name in tls_names]
        if any(tls_paths) and not all(tls_paths):
            raise ConfigError(f"{PREFIX}{', '.join(tls_names)} go together")
        tls = StubTls(*(Path(p) for p in tls_paths if p)) if all(tls_paths) else None
        accept_after = reader.text("ACCEPT_AFTER_SECONDS")
        accept_delay = None
        if accept_after is not None:
            accept_delay = reader.number("ACCEPT_AFTER_SECONDS", float, 0.0)
            if not (math.isfinite(accept_delay) and accept_delay >= 0):
                raise ConfigError(
                    f"{PREFIX}ACCEPT_AFTER_SECONDS: must be a non-negative number of seconds"
                )
        named = reader.text("BREAK")
        try:
            breaks = parse_breaks(named.split(",") if named else ())
        except ValueError as e:
            raise ConfigError(f"{PREFIX}BREAK: {e}") from None
        return cls(
            tls=tls,
            region_code=region,
            implementation_list=Path(listing)
            if listing
            else STANDARDS_DIR / "implementations" / f"{region}.json",
            host=reader.text("HOST") or "127.0.0.1",
            port=port,
            data_dir=Path(data_dir) if data_dir else None,
            gateway_address=reader.text("GATEWAY") or None,
            license_algorithm=algorithm,
            faults=faults,
            seed=None if seed is None else reader.number("SEED", int, 0),
            grace=grace,
            accept_after=accept_delay,
            breaks=breaks,
        )


class _Reader:
    """Typed reads of `TONGBAN_STUB_*` keys; empty values count as absent."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._mapping = mapping

    def text(self, key: str) -> str | None:
        value = self._mapping.get(PREFIX + key, "").strip()
        return value or None

    def number(self, key: str, kind: Callable[[str], _T], default: _T) -> _T:
        value = self.text(key)
        if value is None:
            return default
        try:
            return kind(value)
        except ValueError:
            raise ConfigError(f"{PREFIX}{key}: {value!r} is not a valid number") from None

    def flag(self, key: str) -> bool:
        value = (self.text(key) or "").lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ConfigError(f"{PREFIX}{key}: {value!r} is not a boolean")


# flag → key; flags given on the command line override the mapping.
_FLAGS: dict[str, str] = {
    "--region": "REGION",
    "--host": "HOST",
    "--port": "PORT",
    "--data-dir": "DATA_DIR",
    "--implementation-list": "IMPLEMENTATION_LIST",
    "--gateway": "GATEWAY",
    "--license-algorithm": "LICENSE_ALGORITHM",
    "--seed": "SEED",
    "--grace": "GRACE_SECONDS",
    "--unavailable-fraction": "UNAVAILABLE_FRACTION",
    "--commit-then-drop-fraction": "COMMIT_THEN_DROP_FRACTION",
    "--resource-exhausted-fraction": "RESOURCE_EXHAUSTED_FRACTION",
    "--latency-ms": "LATENCY_MS",
    "--latency-jitter-ms": "LATENCY_JITTER_MS",
    "--pushback-ms": "PUSHBACK_MS",
    "--tls-ca": "TLS_CA",
    "--tls-cert": "TLS_CERT",
    "--tls-key": "TLS_KEY",
    "--client-cert": "CLIENT_CERT",
    "--client-key": "CLIENT_KEY",
    "--accept-after": "ACCEPT_AFTER_SECONDS",
    "--break": "BREAK",
}
_SWITCHES: dict[str, str] = {"--hang": "HANG", "--down": "DOWN"}


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m region_stubs`; every flag has a `TONGBAN_STUB_*` twin."""
    parser = argparse.ArgumentParser(
        prog="python -m region_stubs",
        description="Run a region stub: a stand-in provincial platform serving RegionService.",
    )
    for flag, key in _FLAGS.items():
        parser.add_argument(flag, dest=key, metavar=key.rsplit("_", 1)[-1], help=f"${PREFIX}{key}")
    for flag, key in _SWITCHES.items():
        parser.add_argument(
            flag, dest=key, action="store_const", const="true", help=f"${PREFIX}{key}"
        )
    return parser


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> StubConfig:
    """Merges command-line flags over `environ` and builds the config.

    Raises `SystemExit` for a malformed command line (argparse's way) and `ConfigError` for a
    bad value.
    """
    given = vars(build_parser().parse_args(list(argv)))
    merged = dict(environ)
    merged.update({PREFIX + key: value for key, value in given.items() if value is not None})
    return StubConfig.from_mapping(merged)
