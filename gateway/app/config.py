"""The gateway's configuration: built once from a plain mapping, then passed explicitly.

Sources, later ones winning: defaults → a JSON file (`TONGBAN_CONFIG`) → environment-style keys
(`TONGBAN_*`) → command-line flags (the CLI turns them into the same keys). Nothing but the CLI
reads `os.environ`; everything else receives a `GatewayConfig`. Every key read here is listed,
with its default, in `gateway.app.settings` (the operator's reference, `docs/SETTINGS.md`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.applications.outbox import DeliveryConfig
from gateway.errors import InvalidRequest
from gateway.routing.breaker import BreakerConfig
from gateway.security.ratelimit import RateLimit, parse_rate_limits
from gateway.security.tls import ServerTlsFiles, parse_serial
from gateway.storage.location import PostgresConfig, StoreConfig, split_password

DEFAULT_PORT = 50051
DEFAULT_METRICS_PORT = 9464
DEFAULT_MAX_RECEIVE_BYTES = 16 * 1024 * 1024
"""Implementation lists are large: a province's list of 200 000 rows fits."""


class ConfigError(InvalidRequest):
    """A configuration value is invalid (reported at start, never at request time)."""

    reason = "CONFIG_INVALID"


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway process needs to start."""

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = DEFAULT_PORT
    """gRPC port; 0 picks a free one (announced on stdout)."""
    data_dir: Path = Path("data")
    """Directory of the SQLite store (unless `store` names another) and other state."""
    store: StoreConfig | None = None
    """The store: a SQLite file or a PostgreSQL database (`TONGBAN_STORE`, a path or a
    `postgresql://` URL); None is the SQLite file `data_dir/gateway.sqlite3`."""
    standards_dir: Path = Path("standards")
    """Bundled catalog data, used to seed an empty store."""
    bootstrap_catalogs: tuple[str, ...] = ("catalog/2025.1.json",)
    """The catalog versions (files under `standards_dir`, oldest first) an empty store is
    seeded with: the first, then the implementation lists, then each later one as if
    published (`TONGBAN_BOOTSTRAP_CATALOGS`, comma-separated). `catalog/2026.1.json` carries
    the themes (一件事) that bundles need."""
    regions: Mapping[str, str] = field(default_factory=dict)
    """Province code → address of its RegionService."""
    standards_keys: Mapping[str, Path] = field(default_factory=dict)
    """Standards body name → public key (PEM) that signs its catalog publications."""
    license_audience: str = "tongban-gateway"
    """The `aud` the gateway expects in e-licence tokens."""
    license_trust: Path | None = None
    """JSON trust list (which provinces issue which licence types); None trusts every
    connected province for every licence type of the catalog (the local federation)."""
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    """Delivery and retry settings."""
    metrics_port: int = DEFAULT_METRICS_PORT
    """Port of the Prometheus `/metrics` endpoint; -1 disables it, 0 picks a free one."""
    health_port: int = -1
    """Plaintext port serving only `grpc.health.v1`, for Kubernetes probes (which cannot speak
    TLS); -1 disables it, 0 picks a free one."""
    reflection: bool = True
    """Serve gRPC server reflection."""
    grace: float = 5.0
    """Grace period for in-flight calls at shutdown, in seconds."""
    probe_interval: float = 0.0
    """Time between health NOT_SERVING and stopping, so probes notice, in seconds."""
    tls: ServerTlsFiles | None = None
    """CA, certificate and key of the gateway (served with client auth required, reloaded on
    change, and presented to the provinces); None is insecure mode: plaintext, no identities,
    authorization skipped (a warning is logged)."""
    deny_serials: frozenset[int] = frozenset()
    """Client certificate serials refused on every call (revocation)."""
    reflection_ops_only: bool = True
    """With TLS, serve reflection to operator identities only."""
    audit: bool = True
    """Write the tamper-evident audit log."""
    audit_log: Path | None = None
    """The audit log file; None means `data_dir/audit.jsonl`."""
    audit_key_file: Path | None = None
    """The key of personal-data digests (created if missing); None means `data_dir/audit.key`."""
    audit_fsync: str = "always"
    """When audit records reach the disk: `always`, `interval` (1 s) or `never`."""
    max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_BYTES
    """Largest request message accepted."""
    max_metadata_bytes: int = 16 * 1024
    """Largest request metadata (headers) accepted."""
    max_concurrent_rpcs: int = 1000
    """Calls served at once; excess calls get RESOURCE_EXHAUSTED. 0 means no cap."""
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    """Per-caller token buckets by method (short name, full name or `*`); empty: no limits."""
    watch_poll: float = 1.0
    """Seconds a watch stream waits for a change before it reads the store itself: the last
    resort, as other replicas' changes are heard at once through the store's change feed (a
    SQLite store has none: its `--workers` see each other's changes by this poll)."""
    replica: str = ""
    """This replica's name among several sharing one store (letters, digits, `.`, `_`, `-`):
    it names the replica's audit chain, `audit-<replica>.jsonl`; empty for a lone gateway."""
    tracing: bool = False
    """Make OpenTelemetry spans (`TONGBAN_TRACING`), exported as the standard `OTEL_*`
    variables say; off, nothing of tracing is installed."""

    @property
    def store_config(self) -> StoreConfig:
        """The store to open: `store`, or the default SQLite file under `data_dir`."""
        return self.store if self.store is not None else self.data_dir / "gateway.sqlite3"

    share_port: bool = False
    """Bind the port with SO_REUSEPORT, for the processes of one `--workers N` gateway (set by
    its supervisor). A lone gateway never shares: a port already taken is refused at start."""
    worker_index: int = 0
    """This process's index among `--workers N` (0 alone); workers keep separate audit logs
    (a log is one hash chain, locked by one process) and metrics ports (base + index)."""

    @property
    def audit_path(self) -> Path:
        """The audit log file: one hash chain per replica and per worker."""
        path = self.audit_log or self.data_dir / "audit.jsonl"
        if self.replica:
            path = path.with_stem(f"{path.stem}-{self.replica}")
        return path.with_stem(f"{path.stem}-{self.worker_index}") if self.worker_index else path

    @property
    def audit_key_path(self) -> Path:
        """The file of the personal-data digest key."""
        return self.audit_key_file or self.data_dir / "audit.key"


def parse_regions(text: str) -> dict[str, str]:
    """Parses `440000=127.0.0.1:50061,510000=127.0.0.1:50062`."""
    regions: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        code, sep, address = item.partition("=")
        if not sep or not code.isdigit() or len(code) != 6 or not address:
            raise ConfigError(f"region entry {item!r} is not CODE=HOST:PORT")
        regions[code] = address
    return regions


def parse_keys(text: str) -> dict[str, Path]:
    """Parses `national-standards-body=keys/national.pub.pem,...`."""
    keys: dict[str, Path] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"standards key entry {item!r} is not NAME=PATH")
        keys[name] = Path(path)
    return keys


def _number(mapping: Mapping[str, str], key: str, default: float) -> float:
    raw = mapping.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"{key} must not be negative")
    return value


def _port(mapping: Mapping[str, str], key: str, default: int, *, allow_disable: bool) -> int:
    raw = mapping.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a port number") from None
    if not (0 <= value <= 65535 or (allow_disable and value == -1)):
        raise ConfigError(f"{key}={value} is out of range")
    return value


def _bool(mapping: Mapping[str, str], key: str, default: bool) -> bool:
    raw = mapping.get(key)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}={raw!r} is not a boolean")


def _tls(merged: Mapping[str, str]) -> ServerTlsFiles | None:
    if _bool(merged, "TONGBAN_INSECURE", False):
        return None
    paths = [
        merged.get(key, "") for key in ("TONGBAN_TLS_CA", "TONGBAN_TLS_CERT", "TONGBAN_TLS_KEY")
    ]
    if not any(paths):
        raise ConfigError(
            "TLS is required: set TONGBAN_TLS_CA, TONGBAN_TLS_CERT and TONGBAN_TLS_KEY "
            "(see `tongban certs`), or TONGBAN_INSECURE=true for plaintext development"
        )
    if not all(paths):
        raise ConfigError("TONGBAN_TLS_CA, TONGBAN_TLS_CERT and TONGBAN_TLS_KEY go together")
    return ServerTlsFiles(Path(paths[0]), Path(paths[1]), Path(paths[2]))


def _int(mapping: Mapping[str, str], key: str, default: int) -> int:
    value = _number(mapping, key, default)
    if value != int(value):
        raise ConfigError(f"{key} must be a whole number")
    return int(value)


def _positive(mapping: Mapping[str, str], key: str, default: float) -> float:
    value = _number(mapping, key, default)
    if value <= 0:
        raise ConfigError(f"{key} must be more than 0")
    return value


def _replica(name: str) -> str:
    if name and not (len(name) <= 63 and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name)):
        raise ConfigError(
            f"TONGBAN_REPLICA={name!r}: 1 to 63 letters, digits, `.`, `_` or `-`, "
            "starting with a letter or digit (it names a file)"
        )
    return name


def _breaker(mapping: Mapping[str, str], default: BreakerConfig) -> BreakerConfig:
    try:
        return BreakerConfig(
            consecutive_failures=int(
                _number(
                    mapping, "TONGBAN_BREAKER_CONSECUTIVE_FAILURES", default.consecutive_failures
                )
            ),
            failure_ratio=_number(mapping, "TONGBAN_BREAKER_FAILURE_RATIO", default.failure_ratio),
            open_base=_number(mapping, "TONGBAN_BREAKER_OPEN_BASE", default.open_base),
            open_max=_number(mapping, "TONGBAN_BREAKER_OPEN_MAX", default.open_max),
            reopen_ratio=_number(mapping, "TONGBAN_BREAKER_REOPEN_RATIO", default.reopen_ratio),
            probe_failures=_int(mapping, "TONGBAN_BREAKER_PROBE_FAILURES", default.probe_failures),
            half_open_window=_int(
                mapping, "TONGBAN_BREAKER_HALF_OPEN_WINDOW", default.half_open_window
            ),
            ramp_start=_number(mapping, "TONGBAN_BREAKER_RAMP_START", default.ramp_start),
            ramp_step=_number(mapping, "TONGBAN_BREAKER_RAMP_STEP", default.ramp_step),
            close_after=_int(mapping, "TONGBAN_BREAKER_CLOSE_AFTER", default.close_after),
        )
    except ValueError as exc:
        raise ConfigError(f"breaker settings: {exc}") from None


def load_store(mapping: Mapping[str, str]) -> StoreConfig | None:
    """The store `TONGBAN_STORE` names (None: the default file under the data directory).

    A `postgresql://` URL takes its password from the URL itself, else from the file
    `TONGBAN_STORE_PASSWORD_FILE` names (read at each new connection, not here), else from
    `PGPASSWORD`; a password both in the URL and in a file is refused as ambiguous. No message
    repeats the URL (it may hold the password).
    """
    raw = mapping.get("TONGBAN_STORE", "")
    if not raw:
        return None
    if "://" not in raw:
        return Path(raw)
    try:
        url, in_url = split_password(raw)
    except ValueError as exc:
        raise ConfigError(f"TONGBAN_STORE: {exc}") from None
    password_file = mapping.get("TONGBAN_STORE_PASSWORD_FILE", "")
    if in_url is not None and password_file:
        raise ConfigError(
            "TONGBAN_STORE carries a password and TONGBAN_STORE_PASSWORD_FILE names another: "
            "give one"
        )
    password = in_url
    if password is None and not password_file:
        password = mapping.get("PGPASSWORD") or None
    pool_size = _int(mapping, "TONGBAN_STORE_POOL_SIZE", 10)
    try:
        return PostgresConfig(
            url,
            password=password,
            password_file=Path(password_file) if password_file else None,
            pool_size=pool_size,
        )
    except ValueError as exc:
        raise ConfigError(f"TONGBAN_STORE: {exc}") from None


def load_config(mapping: Mapping[str, str]) -> GatewayConfig:
    """Builds the configuration from `TONGBAN_*` keys (and the JSON file they may name)."""
    merged: dict[str, str] = {}
    config_file = mapping.get("TONGBAN_CONFIG")
    if config_file:
        try:
            loaded = json.loads(Path(config_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {config_file} must hold a JSON object")
        merged.update({str(k): str(v) for k, v in loaded.items()})
    merged.update(mapping)
    delivery_defaults = DeliveryConfig()
    max_attempts = int(_number(merged, "TONGBAN_MAX_ATTEMPTS", delivery_defaults.max_attempts))
    if max_attempts < 1:
        raise ConfigError("TONGBAN_MAX_ATTEMPTS must be at least 1")
    delivery = DeliveryConfig(
        max_attempts=max_attempts,
        per_attempt_timeout=_number(
            merged, "TONGBAN_ATTEMPT_TIMEOUT", delivery_defaults.per_attempt_timeout
        ),
        default_budget=_number(merged, "TONGBAN_DEFAULT_BUDGET", delivery_defaults.default_budget),
        deadline_margin=_number(
            merged, "TONGBAN_DEADLINE_MARGIN", delivery_defaults.deadline_margin
        ),
        queue_expiry=_number(merged, "TONGBAN_QUEUE_EXPIRY", delivery_defaults.queue_expiry),
        dispatch_interval=_number(
            merged, "TONGBAN_DISPATCH_INTERVAL", delivery_defaults.dispatch_interval
        ),
        redeliver_backoff_max=_number(
            merged, "TONGBAN_REDELIVER_BACKOFF_MAX", delivery_defaults.redeliver_backoff_max
        ),
        breaker=_breaker(merged, delivery_defaults.breaker),
    )
    worker = _int(merged, "TONGBAN_WORKER_INDEX", 0)
    metrics_port = _port(merged, "TONGBAN_METRICS_PORT", DEFAULT_METRICS_PORT, allow_disable=True)
    return GatewayConfig(
        host=merged.get("TONGBAN_HOST", "127.0.0.1"),
        port=_port(merged, "TONGBAN_PORT", DEFAULT_PORT, allow_disable=False),
        data_dir=Path(merged.get("TONGBAN_DATA_DIR", "data")),
        store=load_store(merged),
        standards_dir=Path(merged.get("TONGBAN_STANDARDS_DIR", "standards")),
        bootstrap_catalogs=tuple(
            part.strip()
            for part in merged.get("TONGBAN_BOOTSTRAP_CATALOGS", "catalog/2025.1.json").split(",")
            if part.strip()
        ),
        regions=parse_regions(merged.get("TONGBAN_REGIONS", "")),
        standards_keys=parse_keys(merged.get("TONGBAN_STANDARDS_KEYS", "")),
        license_audience=merged.get("TONGBAN_LICENSE_AUDIENCE", "tongban-gateway"),
        license_trust=Path(merged["TONGBAN_LICENSE_TRUST"])
        if merged.get("TONGBAN_LICENSE_TRUST")
        else None,
        delivery=delivery,
        metrics_port=metrics_port + worker if metrics_port > 0 else metrics_port,
        worker_index=worker,
        share_port="TONGBAN_WORKER_INDEX" in merged,
        health_port=_port(merged, "TONGBAN_HEALTH_PORT", -1, allow_disable=True),
        reflection=_bool(merged, "TONGBAN_REFLECTION", True),
        grace=_number(merged, "TONGBAN_GRACE", 5.0),
        probe_interval=_number(merged, "TONGBAN_PROBE_INTERVAL", 0.0),
        watch_poll=_positive(merged, "TONGBAN_WATCH_POLL", 1.0),
        replica=_replica(merged.get("TONGBAN_REPLICA", "")),
        tracing=_bool(merged, "TONGBAN_TRACING", False),
        **_security(merged),  # type: ignore[arg-type]
    )


def _security(merged: Mapping[str, str]) -> dict[str, object]:
    try:
        deny = frozenset(
            parse_serial(s) for s in merged.get("TONGBAN_DENY_SERIALS", "").split(",") if s.strip()
        )
        limits = parse_rate_limits(merged.get("TONGBAN_RATE_LIMITS", ""))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    fsync = merged.get("TONGBAN_AUDIT_FSYNC", "always")
    if fsync not in ("always", "interval", "never"):
        raise ConfigError(f"TONGBAN_AUDIT_FSYNC={fsync!r} is not always, interval or never")
    return {
        "tls": _tls(merged),
        "deny_serials": deny,
        "reflection_ops_only": _bool(merged, "TONGBAN_REFLECTION_OPS_ONLY", True),
        "audit": _bool(merged, "TONGBAN_AUDIT", True),
        "audit_log": Path(merged["TONGBAN_AUDIT_LOG"]) if merged.get("TONGBAN_AUDIT_LOG") else None,
        "audit_key_file": Path(merged["TONGBAN_AUDIT_KEY_FILE"])
        if merged.get("TONGBAN_AUDIT_KEY_FILE")
        else None,
        "audit_fsync": fsync,
        "max_receive_message_bytes": _int(
            merged, "TONGBAN_MAX_RECEIVE_MESSAGE_BYTES", DEFAULT_MAX_RECEIVE_BYTES
        ),
        "max_metadata_bytes": _int(merged, "TONGBAN_MAX_METADATA_BYTES", 16 * 1024),
        "max_concurrent_rpcs": _int(merged, "TONGBAN_MAX_CONCURRENT_RPCS", 1000),
        "rate_limits": limits,
    }
