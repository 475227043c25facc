"""Every key the gateway's configuration reads, with its default and meaning: the operator's
reference, rendered into `docs/SETTINGS.md` (`make docs`).

Invariants (checked by `tests/app/test_settings.py`):
- `SETTINGS` names exactly the keys `gateway.app.config` reads, each once.
- A default written as a value (not in parentheses) is the default: setting the key to it
  changes nothing in the configuration.
- `docs/SETTINGS.md` is `render()` of this table, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Setting:
    """One key of the configuration."""

    key: str
    """The environment-style key, e.g. `TONGBAN_PORT`."""
    default: str
    """The default as the key's value would spell it; in parentheses, what its absence means."""
    meaning: str
    """What it sets, with its unit."""
    group: str
    """The section of the reference it is listed in."""


SERVING = "Serving"
STORE = "Store"
CATALOG = "Catalog and licences"
DELIVERY = "Delivery"
BREAKER = "Circuit breaker (per province)"
SECURITY = "Security"
AUDIT = "Audit log"
LIMITS = "Limits"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "TONGBAN_CONFIG",
        "(none)",
        "A JSON file of `TONGBAN_*` keys, read first: the environment and flags override it.",
        SERVING,
    ),
    Setting("TONGBAN_HOST", "127.0.0.1", "Interface the gRPC server listens on.", SERVING),
    Setting(
        "TONGBAN_PORT", "50051", "gRPC port; 0 picks a free one (announced on stdout).", SERVING
    ),
    Setting(
        "TONGBAN_METRICS_PORT",
        "9464",
        "Port of the Prometheus `/metrics` endpoint; -1 disables it, 0 picks a free one. "
        "Worker N of `--workers` serves on this port + N.",
        SERVING,
    ),
    Setting(
        "TONGBAN_HEALTH_PORT",
        "-1",
        "Plaintext port serving only `grpc.health.v1`, for probes that cannot speak TLS; "
        "-1 disables it, 0 picks a free one.",
        SERVING,
    ),
    Setting(
        "TONGBAN_REFLECTION",
        "true",
        "Serve gRPC server reflection (to operators only, see TONGBAN_REFLECTION_OPS_ONLY).",
        SERVING,
    ),
    Setting(
        "TONGBAN_GRACE",
        "5.0",
        "Seconds in-flight calls may take to finish at shutdown.",
        SERVING,
    ),
    Setting(
        "TONGBAN_PROBE_INTERVAL",
        "0.0",
        "Seconds between health turning NOT_SERVING and the server stopping, so probes notice.",
        SERVING,
    ),
    Setting(
        "TONGBAN_WATCH_POLL",
        "1.0",
        "Seconds a watch stream waits for a change before reading the store itself (the last "
        "resort: other replicas' changes arrive through the store's change feed).",
        SERVING,
    ),
    Setting(
        "TONGBAN_TRACING",
        "false",
        "Make OpenTelemetry spans, exported over OTLP as the standard `OTEL_*` variables say "
        '(README, "Traces"); off, nothing of tracing is installed.',
        SERVING,
    ),
    Setting(
        "TONGBAN_REPLICA",
        "(none)",
        "This replica's name among several sharing one store (1 to 63 letters, digits, `.`, "
        "`_`, `-`); it names the replica's audit chain `audit-<replica>.jsonl`.",
        SERVING,
    ),
    Setting(
        "TONGBAN_WORKER_INDEX",
        "(none: a lone process)",
        "Set by `tongban gateway --workers N` for each worker it starts (0 to N-1): the worker "
        "then shares the port and keeps its own audit log and metrics port. Not for operators.",
        SERVING,
    ),
    Setting(
        "TONGBAN_DATA_DIR",
        "data",
        "Directory of the default SQLite store, the audit log and its key.",
        STORE,
    ),
    Setting(
        "TONGBAN_STORE",
        "(none: DATA_DIR/gateway.sqlite3)",
        "The store: a SQLite file path or a `postgresql://` URL.",
        STORE,
    ),
    Setting(
        "TONGBAN_STORE_PASSWORD_FILE",
        "(none)",
        "A file holding the PostgreSQL password, read at each new connection (so a rotated "
        "secret is picked up); refused together with a password in the URL.",
        STORE,
    ),
    Setting(
        "PGPASSWORD",
        "(none)",
        "libpq's variable: the PostgreSQL password when neither the URL nor "
        "TONGBAN_STORE_PASSWORD_FILE gives one.",
        STORE,
    ),
    Setting(
        "TONGBAN_STORE_POOL_SIZE",
        "10",
        "Connections in the PostgreSQL pool (read only for a `postgresql://` store).",
        STORE,
    ),
    Setting(
        "TONGBAN_STANDARDS_DIR",
        "standards",
        "Bundled catalog data: regions, the catalog and the implementation lists that seed an "
        "empty store.",
        CATALOG,
    ),
    Setting(
        "TONGBAN_BOOTSTRAP_CATALOGS",
        "catalog/2025.1.json",
        "The catalog versions (files under the standards directory, oldest first, "
        "comma-separated) an empty store is seeded with: the first, the implementation lists, "
        "then each later one as if published. `catalog/2026.1.json` carries the themes "
        "(一件事) that bundles need.",
        CATALOG,
    ),
    Setting(
        "TONGBAN_STANDARDS_KEYS",
        "(none: no publication is accepted)",
        "`BODY=PUBLIC_KEY_PEM,...`: the standards bodies whose signed catalog versions are "
        "accepted, and their public keys.",
        CATALOG,
    ),
    Setting(
        "TONGBAN_REGIONS",
        "(none)",
        "`CODE=HOST:PORT,...`: each province's RegionService.",
        CATALOG,
    ),
    Setting(
        "TONGBAN_LICENSE_AUDIENCE",
        "tongban-gateway",
        "The `aud` the gateway expects in e-licence tokens.",
        CATALOG,
    ),
    Setting(
        "TONGBAN_LICENSE_TRUST",
        "(none: every connected province, every licence type)",
        "A JSON trust list: which provinces issue which licence types.",
        CATALOG,
    ),
    Setting(
        "TONGBAN_MAX_ATTEMPTS",
        "4",
        "Attempts per delivery call, the first included.",
        DELIVERY,
    ),
    Setting(
        "TONGBAN_ATTEMPT_TIMEOUT",
        "1.0",
        "Upper bound of one delivery attempt, in seconds.",
        DELIVERY,
    ),
    Setting(
        "TONGBAN_DEFAULT_BUDGET",
        "5.0",
        "Seconds a delivery call may take when the caller set no deadline (and for redelivery).",
        DELIVERY,
    ),
    Setting(
        "TONGBAN_DEADLINE_MARGIN",
        "0.1",
        "Seconds kept back from the caller's deadline to record the result and answer in time.",
        DELIVERY,
    ),
    Setting(
        "TONGBAN_QUEUE_EXPIRY",
        "86400.0",
        "Seconds a queued application is retried before it becomes FAILED (`DELIVERY_EXPIRED`).",
        DELIVERY,
    ),
    Setting(
        "TONGBAN_DISPATCH_INTERVAL",
        "0.2",
        "Seconds between two looks of the dispatcher for due applications.",
        DELIVERY,
    ),
    Setting(
        "TONGBAN_REDELIVER_BACKOFF_MAX",
        "30.0",
        "Longest wait between two redeliveries of one application, in seconds.",
        DELIVERY,
    ),
    Setting(
        "TONGBAN_BREAKER_CONSECUTIVE_FAILURES",
        "5",
        "Failures in a row that open the breaker.",
        BREAKER,
    ),
    Setting(
        "TONGBAN_BREAKER_FAILURE_RATIO",
        "0.5",
        "Failed share of at least 20 results in 10 s that opens the breaker.",
        BREAKER,
    ),
    Setting(
        "TONGBAN_BREAKER_OPEN_BASE",
        "5.0",
        "Seconds the breaker stays open the first time.",
        BREAKER,
    ),
    Setting(
        "TONGBAN_BREAKER_OPEN_MAX",
        "60.0",
        "Cap of the open time, in seconds; it doubles on each re-open until a probe succeeds.",
        BREAKER,
    ),
    Setting(
        "TONGBAN_BREAKER_PROBE_FAILURES",
        "5",
        "Failed probes, none succeeding, that re-open a half-open breaker.",
        BREAKER,
    ),
    Setting(
        "TONGBAN_BREAKER_REOPEN_RATIO",
        "0.85",
        "Failed share of half-open's latest results (at least 20) that re-opens it.",
        BREAKER,
    ),
    Setting(
        "TONGBAN_BREAKER_HALF_OPEN_WINDOW",
        "100",
        "How many of half-open's latest results the re-open ratio is taken over.",
        BREAKER,
    ),
    Setting(
        "TONGBAN_BREAKER_RAMP_START",
        "0.1",
        "Share of calls let through after half-open's first success; the share's floor.",
        BREAKER,
    ),
    Setting(
        "TONGBAN_BREAKER_RAMP_STEP",
        "0.1",
        "Added to the share on each success; the fraction of it taken away on each failure.",
        BREAKER,
    ),
    Setting(
        "TONGBAN_BREAKER_CLOSE_AFTER",
        "20",
        "Successes in a row at full share that close the breaker.",
        BREAKER,
    ),
    Setting(
        "TONGBAN_INSECURE",
        "false",
        "Plaintext, no identities, authorization skipped (development on loopback only).",
        SECURITY,
    ),
    Setting(
        "TONGBAN_TLS_CA",
        "(none: required unless TONGBAN_INSECURE)",
        "CA that client certificates must chain to (PEM; re-read when it changes).",
        SECURITY,
    ),
    Setting(
        "TONGBAN_TLS_CERT",
        "(none: required unless TONGBAN_INSECURE)",
        "The gateway's certificate (PEM; re-read when it changes).",
        SECURITY,
    ),
    Setting(
        "TONGBAN_TLS_KEY",
        "(none: required unless TONGBAN_INSECURE)",
        "The gateway's private key (PEM; re-read when it changes).",
        SECURITY,
    ),
    Setting(
        "TONGBAN_DENY_SERIALS",
        "(none)",
        "Refused client certificate serials, hex (`3A:F1:…` or `0x…`), comma-separated.",
        SECURITY,
    ),
    Setting(
        "TONGBAN_REFLECTION_OPS_ONLY",
        "true",
        "With TLS, serve reflection to operator identities only.",
        SECURITY,
    ),
    Setting(
        "TONGBAN_RATE_LIMITS",
        "(none: no limits)",
        "`METHOD=RATE/BURST,...` per caller, rate per second; short or full method name, `*` "
        "for the rest.",
        SECURITY,
    ),
    Setting("TONGBAN_AUDIT", "true", "Write the tamper-evident audit log.", AUDIT),
    Setting(
        "TONGBAN_AUDIT_LOG",
        "(none: DATA_DIR/audit.jsonl)",
        "The audit log file (one hash chain per replica and per worker).",
        AUDIT,
    ),
    Setting(
        "TONGBAN_AUDIT_KEY_FILE",
        "(none: DATA_DIR/audit.key)",
        "The key of personal-data digests (created if missing); keep it away from the log.",
        AUDIT,
    ),
    Setting(
        "TONGBAN_AUDIT_FSYNC",
        "always",
        "When audit records reach the disk: `always`, `interval` (1 s) or `never`.",
        AUDIT,
    ),
    Setting(
        "TONGBAN_MAX_RECEIVE_MESSAGE_BYTES",
        "16777216",
        "Largest request message accepted, in bytes (16 MiB: implementation lists are large).",
        LIMITS,
    ),
    Setting(
        "TONGBAN_MAX_METADATA_BYTES",
        "16384",
        "Largest request metadata (headers) accepted, in bytes.",
        LIMITS,
    ),
    Setting(
        "TONGBAN_MAX_CONCURRENT_RPCS",
        "1000",
        "Calls served at once; excess calls get RESOURCE_EXHAUSTED. 0 means no cap.",
        LIMITS,
    ),
)

_GROUPS = (SERVING, STORE, CATALOG, DELIVERY, BREAKER, SECURITY, AUDIT, LIMITS)

_HEADER = """\
# Settings

<!-- Generated from gateway/app/settings.py by `make docs`; a test fails when it is stale. -->

Every key the gateway reads (`tongban gateway`; `tongban up` sets its own). Sources, later ones
winning: the defaults below, the JSON file `TONGBAN_CONFIG` names, the environment, then the
flags of `tongban gateway` (`--port` for `TONGBAN_PORT`, and so on). Times are in seconds,
sizes in bytes, booleans `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`). A default in
parentheses says what leaving the key unset means.
"""


def render() -> str:
    """`docs/SETTINGS.md`: the settings by group, in table order."""
    parts = [_HEADER]
    for group in _GROUPS:
        parts.append(f"\n## {group}\n\n| Setting | Default | Meaning |\n|---|---|---|\n")
        for s in SETTINGS:
            if s.group == group:
                default = s.default if s.default.startswith("(") else f"`{s.default}`"
                parts.append(f"| `{s.key}` | {default} | {s.meaning} |\n")
    return "".join(parts)


if __name__ == "__main__":
    print(render(), end="")
