"""The gateway's configuration: built once from a plain mapping, then passed explicitly.

Sources, later ones winning: defaults → a JSON file (`TONGBAN_CONFIG`) → environment-style keys
(`TONGBAN_*`) → command-line flags (the CLI turns them into the same keys). Nothing but the CLI
reads `os.environ`; everything else receives a `GatewayConfig`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import InvalidRequest

DEFAULT_PORT = 50051
DEFAULT_METRICS_PORT = 9464


class ConfigError(InvalidRequest):
    """A configuration value is invalid (reported at start, never at request time)."""

    reason = "CONFIG_INVALID"


@dataclass(frozen=True)
class DeliveryConfig:
    """How applications are delivered to provinces."""

    max_attempts: int = 4
    """Attempts per delivery call, the first included."""
    per_attempt_timeout: float = 1.0
    """Upper bound of one attempt, in seconds."""
    default_budget: float = 5.0
    """Time budget of a submission whose caller set no deadline, in seconds."""
    deadline_margin: float = 0.05
    """Time kept back from the caller's deadline to answer in time, in seconds."""
    queue_expiry: float = 86400.0
    """How long a queued application is retried before it becomes FAILED, in seconds."""
    dispatch_interval: float = 0.2
    """How often the dispatcher looks for due applications, in seconds."""
    redeliver_backoff_max: float = 30.0
    """Longest wait between two dispatcher attempts of one application, in seconds."""


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway process needs to start."""

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = DEFAULT_PORT
    """gRPC port; 0 picks a free one (announced on stdout)."""
    data_dir: Path = Path("data")
    """Directory of the SQLite store and other state."""
    standards_dir: Path = Path("standards")
    """Bundled catalog data, used to seed an empty store."""
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

    @property
    def store_path(self) -> Path:
        """The SQLite file."""
        return self.data_dir / "gateway.sqlite3"


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
    )
    return GatewayConfig(
        host=merged.get("TONGBAN_HOST", "127.0.0.1"),
        port=_port(merged, "TONGBAN_PORT", DEFAULT_PORT, allow_disable=False),
        data_dir=Path(merged.get("TONGBAN_DATA_DIR", "data")),
        standards_dir=Path(merged.get("TONGBAN_STANDARDS_DIR", "standards")),
        regions=parse_regions(merged.get("TONGBAN_REGIONS", "")),
        standards_keys=parse_keys(merged.get("TONGBAN_STANDARDS_KEYS", "")),
        license_audience=merged.get("TONGBAN_LICENSE_AUDIENCE", "tongban-gateway"),
        license_trust=Path(merged["TONGBAN_LICENSE_TRUST"])
        if merged.get("TONGBAN_LICENSE_TRUST")
        else None,
        delivery=delivery,
        metrics_port=_port(
            merged, "TONGBAN_METRICS_PORT", DEFAULT_METRICS_PORT, allow_disable=True
        ),
        health_port=_port(merged, "TONGBAN_HEALTH_PORT", -1, allow_disable=True),
        reflection=_bool(merged, "TONGBAN_REFLECTION", True),
        grace=_number(merged, "TONGBAN_GRACE", 5.0),
        probe_interval=_number(merged, "TONGBAN_PROBE_INTERVAL", 0.0),
    )
