"""`tongban up`: the gateway and a local federation of region stubs, on the embedded store."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from gateway.app.config import GatewayConfig
from gateway.app.server import RunningGateway, running_gateway
from gateway.app.serving import announce, stop_event_on_signals
from gateway.security.pki import DEV_OPS, DEV_STANDARDS_BODY, PkiLayout, generate_dev_pki
from gateway.security.tls import ServerTlsFiles
from gateway.tools.federation import AnnouncedProcess, running_federation


def dev_pki(pki_dir: Path, regions: Sequence[str]) -> PkiLayout:
    """Creates or refreshes the development PKI (`tongban certs`, `tongban up`)."""
    return generate_dev_pki(
        pki_dir, regions=regions, standards_bodies=(DEV_STANDARDS_BODY,), ops=(DEV_OPS,)
    )


@contextlib.asynccontextmanager
async def running_local(
    config: GatewayConfig,
    regions: Sequence[str],
    *,
    stub_base_port: int = 0,
    pki: PkiLayout | None = None,
) -> AsyncIterator[tuple[RunningGateway, dict[str, AnnouncedProcess]]]:
    """The gateway first (stubs report back to it), then a stub process per province.

    With `pki` the whole federation speaks mTLS (pass the gateway's files in `config.tls`).
    """
    async with (
        running_gateway(config) as gateway,
        running_federation(
            regions,
            data_dir=config.data_dir,
            standards_dir=config.standards_dir,
            gateway_address=gateway.address,
            base_port=stub_base_port,
            pki=pki,
        ) as stubs,
    ):
        for code, stub in stubs.items():
            gateway.client.set_endpoint(code, stub.address)
        yield gateway, stubs


async def run_local(
    *,
    data_dir: Path,
    standards_dir: Path,
    port: int,
    stub_base_port: int,
    regions: Sequence[str],
    metrics_port: int,
    insecure: bool = False,
) -> int:
    """Starts the gateway and every stub; serves until Ctrl-C; stops stubs, then the gateway.

    mTLS unless `insecure`: the dev PKI under `data_dir/pki` is created on first start and
    refreshed when a certificate nears expiry.
    """
    stop = stop_event_on_signals()
    pki = None if insecure else dev_pki(data_dir / "pki", regions)
    config = GatewayConfig(
        host="127.0.0.1",
        port=port,
        data_dir=data_dir,
        standards_dir=standards_dir,
        metrics_port=metrics_port,
        tls=None if pki is None else ServerTlsFiles.from_layout(pki),
    )
    async with running_local(config, regions, stub_base_port=stub_base_port, pki=pki) as (
        gateway,
        stubs,
    ):
        for code, stub in sorted(stubs.items()):
            announce("listening", service="region-stub", region=code, address=stub.address)
        announce(
            "listening", service="gateway", address=gateway.address, store=str(config.store_config)
        )
        if gateway.metrics_port is not None:
            announce("metrics", service="gateway", address=f"{config.host}:{gateway.metrics_port}")
        print(
            f"\nTongban gateway on {gateway.address} with {len(stubs)} region stubs; "
            "Ctrl-C to stop.\n"
            f"  try: tongban demo, or tongban apply --gateway {gateway.address} --help"
            + ("" if pki is None else f"\n  client certificates: {pki.root / 'clients'}"),
            file=sys.stderr,
        )
        await stop.wait()
        announce("stopping", service="gateway")
    return 0
