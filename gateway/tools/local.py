"""`tongban up`: the gateway and a local federation of region stubs, on the embedded store; or
N gateway replicas sharing one PostgreSQL store (`--store postgresql://… --replicas N`); with
`--http PORT`, the edge proxy (Envoy) serving HTTP/JSON over HTTPS in front of them.

Replicas run in this one process, each a whole gateway of its own (its store and pool, change
feed, catalog, breakers, audit chain `audit-<n>.jsonl`) on consecutive ports: they cooperate
through the database only, as separate processes would. The region stubs report statuses to
the first replica.

The federation accepts catalog publications: a development standards key pair under
`DATA_DIR/keys` (made on first start, reused after) is the one the gateways trust. While it
runs, `DATA_DIR/federation.json` says where everything is (`tools.local_files`).

The stubs wait for an operator's DecideCase unless told how to decide (`decisions`, the stubs'
`--decide` rules; `AUTO_DECIDE` completes every case a second after delivery, so that bundles
run end to end with no one at the stubs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from gateway.app.config import GatewayConfig
from gateway.app.server import RunningGateway, running_gateway
from gateway.app.serving import announce, stop_event_on_signals
from gateway.security.pki import DEV_OPS, DEV_STANDARDS_BODY, PkiLayout, generate_dev_pki
from gateway.security.tls import ServerTlsFiles
from gateway.storage.location import StoreConfig
from gateway.tools.edge import EdgeSettings, EdgeUnavailable, descriptors_path, running_edge
from gateway.tools.exits import CommandError
from gateway.tools.federation import AnnouncedProcess, running_federation
from gateway.tools.local_files import dev_standards_key, write_federation

LOCAL_CATALOGS = ("catalog/2025.1.json", "catalog/2026.1.json")
"""What `tongban up` seeds an empty store with: 2025.1, the lists, then 2026.1 (in force)."""

AUTO_DECIDE = "*=complete:1s"
"""The decision rule of `tongban up --auto-decide`: accept at once, complete a second later."""


def decide_args(decisions: Sequence[str]) -> list[str]:
    """The stub flags for decision rules (`region_stubs.decisions`)."""
    return [arg for rule in decisions for arg in ("--decide", rule)]


def dev_pki(pki_dir: Path, regions: Sequence[str]) -> PkiLayout:
    """Creates or refreshes the development PKI (`tongban certs`, `tongban up`)."""
    return generate_dev_pki(
        pki_dir, regions=regions, standards_bodies=(DEV_STANDARDS_BODY,), ops=(DEV_OPS,)
    )


def check_stub_ports(host: str, base_port: int, regions: Sequence[str]) -> None:
    """A `CommandError` naming the first taken port of the stubs (`base_port` + i for the i-th
    region; none when 0): a stub on a taken port would only say so in its own output."""
    if base_port <= 0:
        return
    for i, code in enumerate(regions):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            try:
                probe.bind((host, base_port + i))
            except OSError:
                raise CommandError(
                    f"port {base_port + i} on {host}, region stub {code}'s, is taken: stop what "
                    "holds it, or choose another --stub-base-port (0: any free ports)"
                ) from None


def replica_configs(config: GatewayConfig, replicas: int) -> list[GatewayConfig]:
    """`config` for each of `replicas` replicas: consecutive ports (gRPC and metrics; 0 stays
    0, any free port) and names `1`…`N` (a lone gateway keeps no name)."""
    if replicas == 1:
        return [config]

    def port(base: int, i: int) -> int:
        return base + i if base > 0 else base

    return [
        dataclasses.replace(
            config,
            port=port(config.port, i),
            metrics_port=port(config.metrics_port, i),
            replica=str(i + 1),
        )
        for i in range(replicas)
    ]


def edge_settings(pki: PkiLayout, gateways: Sequence[str], port: int) -> EdgeSettings:
    """The edge proxy of the local federation: HTTPS on loopback `port` (0: any free port),
    the dev PKI's edge certificate, every gateway (`host:port`) an endpoint."""
    endpoints = []
    for address in gateways:
        host, _, gateway_port = address.rpartition(":")
        endpoints.append((host, int(gateway_port)))
    return EdgeSettings(
        listen_host="127.0.0.1",
        listen_port=port,
        gateways=tuple(endpoints),
        gateway_server_name="localhost",
        ca_cert=str(pki.ca_cert),
        cert=str(pki.edge.cert),
        key=str(pki.edge.key),
        descriptors=str(descriptors_path()),
    )


@contextlib.asynccontextmanager
async def running_replicas(
    configs: Sequence[GatewayConfig],
    regions: Sequence[str],
    *,
    stub_base_port: int = 0,
    pki: PkiLayout | None = None,
    stub_args: Sequence[str] = (),
) -> AsyncIterator[tuple[list[RunningGateway], dict[str, AnnouncedProcess]]]:
    """The gateways, one after the other (the first seeds a fresh store alone), then a stub
    process per province, reporting to the first gateway; every gateway calls every stub.

    With `pki` the whole federation speaks mTLS (pass the gateway's files in the configs' `tls`).
    `stub_args` are added to every stub's command line (e.g. `decide_args(...)`).
    """
    async with contextlib.AsyncExitStack() as stack:
        gateways = [await stack.enter_async_context(running_gateway(config)) for config in configs]
        stubs = await stack.enter_async_context(
            running_federation(
                regions,
                data_dir=configs[0].data_dir,
                standards_dir=configs[0].standards_dir,
                gateway_address=gateways[0].address,
                base_port=stub_base_port,
                extra_args=stub_args,
                pki=pki,
                license_trust=configs[0].license_trust,
            )
        )
        for gateway in gateways:
            for code, stub in stubs.items():
                gateway.client.set_endpoint(code, stub.address)
        yield gateways, stubs


@contextlib.asynccontextmanager
async def running_local(
    config: GatewayConfig,
    regions: Sequence[str],
    *,
    stub_base_port: int = 0,
    pki: PkiLayout | None = None,
    stub_args: Sequence[str] = (),
) -> AsyncIterator[tuple[RunningGateway, dict[str, AnnouncedProcess]]]:
    """The gateway first (stubs report back to it), then a stub process per province."""
    async with running_replicas(
        [config], regions, stub_base_port=stub_base_port, pki=pki, stub_args=stub_args
    ) as (gateways, stubs):
        yield gateways[0], stubs


async def run_local(
    *,
    data_dir: Path,
    standards_dir: Path,
    port: int,
    stub_base_port: int,
    regions: Sequence[str],
    metrics_port: int,
    insecure: bool = False,
    store: StoreConfig | None = None,
    replicas: int = 1,
    decisions: Sequence[str] = (),
    http_port: int | None = None,
) -> int:
    """Starts the gateway (or its replicas), every stub and, with `http_port`, the edge proxy;
    serves until Ctrl-C; stops the edge, the stubs, then the gateways.

    mTLS unless `insecure` (which has no edge: it forwards verified certificates): the dev PKI
    under `data_dir/pki` is created on first start and refreshed when a certificate nears
    expiry. The gateways trust the development standards key (`dev_standards_key`);
    `decisions` are every stub's `--decide` rules.
    """
    check_stub_ports("127.0.0.1", stub_base_port, regions)
    if insecure and http_port is not None:
        raise EdgeUnavailable("the edge proxy needs mTLS: drop --insecure to use --http")
    stop = stop_event_on_signals()
    pki = None if insecure else dev_pki(data_dir / "pki", regions)
    standards_key = dev_standards_key(data_dir)
    config = GatewayConfig(
        host="127.0.0.1",
        port=port,
        data_dir=data_dir,
        store=store,
        standards_dir=standards_dir,
        standards_keys={standards_key.body: standards_key.public_key},
        # 2026.1 in force: its themes (一件事) can be submitted as bundles at once
        bootstrap_catalogs=LOCAL_CATALOGS,
        metrics_port=metrics_port,
        tls=None if pki is None else ServerTlsFiles.from_layout(pki),
    )
    configs = replica_configs(config, replicas)
    async with (
        running_replicas(
            configs,
            regions,
            stub_base_port=stub_base_port,
            pki=pki,
            stub_args=decide_args(decisions),
        ) as (gateways, stubs),
        contextlib.AsyncExitStack() as stack,
    ):
        edge = None
        if http_port is not None and pki is not None:
            settings = edge_settings(pki, [g.address for g in gateways], http_port)
            edge = await stack.enter_async_context(running_edge(settings, data_dir / "edge"))
        for code, stub in sorted(stubs.items()):
            announce("listening", service="region-stub", region=code, address=stub.address)
        for gateway in gateways:
            named = {"replica": gateway.config.replica} if gateway.config.replica else {}
            announce(
                "listening",
                service="gateway",
                address=gateway.address,
                store=str(config.store_config),
                **named,
            )
            if gateway.metrics_port is not None:
                announce(
                    "metrics",
                    service="gateway",
                    address=f"{config.host}:{gateway.metrics_port}",
                    **named,
                )
        if edge is not None:
            announce("listening", service="edge", address=edge.address, protocol="https")
        addresses = ",".join(g.address for g in gateways)
        # Written before the last announcement: whoever read that finds the file.
        federation = write_federation(
            data_dir,
            gateways=[g.address for g in gateways],
            stubs={code: stub.address for code, stub in stubs.items()},
            pki=None if pki is None else pki.root,
            standards_key=standards_key,
        )
        try:
            announce(
                "standards-key",
                body=standards_key.body,
                private_key=str(standards_key.private_key),
                public_key=str(standards_key.public_key),
            )
            what = (
                f"gateway on {addresses}"
                if len(gateways) == 1
                else f"{len(gateways)} gateway replicas on {addresses} sharing "
                f"{config.store_config}"
            )
            print(
                f"\nTongban {what} with {len(stubs)} region stubs; Ctrl-C to stop.\n"
                f"  try: tongban demo, or tongban apply --gateway {addresses} --help\n"
                f"  catalog publications: signed with {standards_key.private_key} "
                f"(tongban catalog publish FILE signs with it)"
                + ("" if pki is None else f"\n  client certificates: {pki.root / 'clients'}")
                + ("" if edge is None or pki is None else _http_hint(pki, edge.port))
                + f"\n  where everything is: {federation}",
                file=sys.stderr,
            )
            await stop.wait()
            announce("stopping", service="gateway")
        finally:
            federation.unlink(missing_ok=True)
    return 0


def _http_hint(pki: PkiLayout, port: int) -> str:
    code = sorted(pki.regions)[0]
    client = pki.regions[code]
    return (
        f"\n  HTTP/JSON on https://localhost:{port}, e.g. as {code}:\n"
        f"    curl --cacert {pki.ca_cert} --cert {client.cert} --key {client.key} \\\n"
        f"      'https://localhost:{port}/v1/applications?region_code={code}'"
    )
