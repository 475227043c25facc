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
    CATALOG_DIR                     --catalog-dir                   standards/catalog
    LICENSE_TRUST                   --license-trust                 (every type of the catalog)
    DECISIONS                       --decide (repeated)             (every matter manual)
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
    FORGE_OUTPUT_LICENSES           --forge-output-licenses         false
    MISMATCH_OUTPUT_LICENSES        --mismatch-output-licenses      false
    TLS_CA                          --tls-ca                        (plaintext)
    TLS_CERT, TLS_KEY               --tls-cert, --tls-key           the stub's server certificate
    CLIENT_CERT, CLIENT_KEY         --client-cert, --client-key     its certificate for reports
    BREAK                           --break                         (every rule kept)

With TLS_CA the stub serves mTLS (client certificates from that CA required) and reports to
the gateway over TLS with its region client certificate; all five files go together.

DECISIONS holds rules as `--decide` takes them (`decisions` says how), separated by `;`, so a
rule's reason cannot hold one: `002031021000=complete:2s;*=reject:MATERIALS_INCOMPLETE`.
LICENSE_TRUST is the gateway's trust list file (`TONGBAN_LICENSE_TRUST`): the stub issues on
request (FetchLicense) only the licence types it names for the stub's province.
BREAK names rules of the southbound contract to break on purpose, comma-separated
(`breaks.Break`): for the conformance kit's own tests, never in a federation.

`TONGBAN_TRACING` (the gateway's own key, so one setting turns tracing on for a whole
federation) makes the stub continue the gateway's traces: OpenTelemetry spans of the calls it
serves and makes, exported as the standard `OTEL_*` variables say.
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
from region_stubs.decisions import Decisions, DecisionsInvalid
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
    catalog_dir: Path = STANDARDS_DIR / "catalog"
    """The national catalog versions (`tongban.catalog/v1` JSON files): what matters issue."""
    license_trust: Path | None = None
    """The gateway's trust list (JSON); None: the province issues every type of the catalog."""
    decisions: Decisions = field(default_factory=Decisions)
    """How the stub decides each matter's cases; by default it waits for an operator."""
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
    tracing: bool = False
    """Make OpenTelemetry spans (`TONGBAN_TRACING`, shared with the gateway)."""
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
                forge_output_licenses=reader.flag("FORGE_OUTPUT_LICENSES"),
                mismatch_output_licenses=reader.flag("MISMATCH_OUTPUT_LICENSES"),
            )
        except FaultsInvalid as e:
            raise ConfigError(f"fault settings: {e}") from None
        rules = [rule.strip() for rule in (reader.text("DECISIONS") or "").split(";")]
        try:
            decisions = Decisions.parse(rule for rule in rules if rule)
        except DecisionsInvalid as e:
            raise ConfigError(f"{PREFIX}DECISIONS (--decide): {e}") from None
        port = reader.number("PORT", int, 0)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{PREFIX}PORT: {port} is not a port number")
        grace = reader.number("GRACE_SECONDS", float, 5.0)
        if not (math.isfinite(grace) and grace >= 0):
            raise ConfigError(f"{PREFIX}GRACE_SECONDS: must be a non-negative number of seconds")
        data_dir = reader.text("DATA_DIR")
        listing = reader.text("IMPLEMENTATION_LIST")
        catalog_dir = reader.text("CATALOG_DIR")
        trust = reader.text("LICENSE_TRUST")
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
        named = reader.text("BREAK")
        try:
            breaks = parse_breaks(named.split(",") if named else ())
        except ValueError as e:
            raise ConfigError(f"{PREFIX}BREAK: {e}") from None
        return cls(
            breaks=breaks,
            tracing=reader.flag("TRACING", prefix="TONGBAN_"),
            tls=tls,
            region_code=region,
            implementation_list=Path(listing)
            if listing
            else STANDARDS_DIR / "implementations" / f"{region}.json",
            catalog_dir=Path(catalog_dir) if catalog_dir else STANDARDS_DIR / "catalog",
            license_trust=Path(trust) if trust else None,
            decisions=decisions,
            host=reader.text("HOST") or "127.0.0.1",
            port=port,
            data_dir=Path(data_dir) if data_dir else None,
            gateway_address=reader.text("GATEWAY") or None,
            license_algorithm=algorithm,
            faults=faults,
            seed=None if seed is None else reader.number("SEED", int, 0),
            grace=grace,
        )


class _Reader:
    """Typed reads of `TONGBAN_STUB_*` keys (or another prefix's); empty values count as
    absent."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._mapping = mapping

    def text(self, key: str, prefix: str = PREFIX) -> str | None:
        value = self._mapping.get(prefix + key, "").strip()
        return value or None

    def number(self, key: str, kind: Callable[[str], _T], default: _T) -> _T:
        value = self.text(key)
        if value is None:
            return default
        try:
            return kind(value)
        except ValueError:
            raise ConfigError(f"{PREFIX}{key}: {value!r} is not a valid number") from None

    def flag(self, key: str, prefix: str = PREFIX) -> bool:
        value = (self.text(key, prefix) or "").lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ConfigError(f"{prefix}{key}: {value!r} is not a boolean")


# flag → key; flags given on the command line override the mapping.
_FLAGS: dict[str, str] = {
    "--region": "REGION",
    "--host": "HOST",
    "--port": "PORT",
    "--data-dir": "DATA_DIR",
    "--implementation-list": "IMPLEMENTATION_LIST",
    "--catalog-dir": "CATALOG_DIR",
    "--license-trust": "LICENSE_TRUST",
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
    "--break": "BREAK",
}
_SWITCHES: dict[str, str] = {
    "--hang": "HANG",
    "--down": "DOWN",
    "--forge-output-licenses": "FORGE_OUTPUT_LICENSES",
    "--mismatch-output-licenses": "MISMATCH_OUTPUT_LICENSES",
}
_DECIDE = "DECISIONS"
"""The key of `--decide`, the one flag given more than once: its rules are joined by `;`."""


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
    parser.add_argument(
        "--decide",
        dest=_DECIDE,
        action="append",
        metavar="MATTER=ACTION",
        help=f"how to decide a matter, e.g. '*=complete:1s' (repeatable; ${PREFIX}{_DECIDE})",
    )
    return parser


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> StubConfig:
    """Merges command-line flags over `environ` and builds the config.

    Raises `SystemExit` for a malformed command line (argparse's way) and `ConfigError` for a
    bad value.
    """
    given = vars(build_parser().parse_args(list(argv)))
    if given[_DECIDE] is not None:
        given[_DECIDE] = ";".join(given[_DECIDE])
    merged = dict(environ)
    merged.update({PREFIX + key: value for key, value in given.items() if value is not None})
    return StubConfig.from_mapping(merged)
