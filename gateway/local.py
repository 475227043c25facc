"""`tongban up`: the gateway and a local federation of region stubs, on the embedded store."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.federation import StubProcess, running_federation
from gateway.server import RunningGateway, running_gateway
from gateway.serving import announce, stop_event_on_signals


@contextlib.asynccontextmanager
async def running_local(
    config: GatewayConfig, regions: Sequence[str], *, stub_base_port: int = 0
) -> AsyncIterator[tuple[RunningGateway, dict[str, StubProcess]]]:
    """The gateway first (stubs report back to it), then a stub process per province."""
    async with (
        running_gateway(config) as gateway,
        running_federation(
            regions,
            data_dir=config.data_dir,
            standards_dir=config.standards_dir,
            gateway_address=gateway.address,
            base_port=stub_base_port,
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
) -> int:
    """Starts the gateway and every stub; serves until Ctrl-C; stops stubs, then the gateway."""
    stop = stop_event_on_signals()
    config = GatewayConfig(
        host="127.0.0.1",
        port=port,
        data_dir=data_dir,
        standards_dir=standards_dir,
        metrics_port=metrics_port,
    )
    async with running_local(config, regions, stub_base_port=stub_base_port) as (gateway, stubs):
        for code, stub in sorted(stubs.items()):
            announce("listening", service="region-stub", region=code, address=stub.address)
        announce(
            "listening", service="gateway", address=gateway.address, store=str(config.store_path)
        )
        if gateway.metrics_port is not None:
            announce("metrics", service="gateway", address=f"{config.host}:{gateway.metrics_port}")
        print(
            f"\nTongban gateway on {gateway.address} with {len(stubs)} region stubs; "
            "Ctrl-C to stop.\n"
            f"  try: tongban demo, or tongban apply --gateway {gateway.address} --help",
            file=sys.stderr,
        )
        await stop.wait()
        announce("stopping", service="gateway")
    return 0
