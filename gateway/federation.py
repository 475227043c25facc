"""A local federation: one region stub process per province, for `tongban up`, demos and tests.

Each stub is a real process (`python -m region_stubs`), started with its province's
implementation list and its own data directory; it announces its address as a JSON line, which
is how the federation learns ports (port 0 works). Stopping sends SIGTERM and waits, then kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.security.pki import PkiLayout

DEFAULT_REGIONS = ("440000", "510000", "330000", "110000", "370000", "520000", "420000")


@dataclass
class StubProcess:
    """A running region stub."""

    region_code: str
    address: str
    process: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)


def stub_command(
    region_code: str,
    *,
    port: int,
    data_dir: Path,
    standards_dir: Path,
    gateway_address: str,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of one stub."""
    return [
        sys.executable,
        "-m",
        "region_stubs",
        "--region",
        region_code,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--implementation-list",
        str(standards_dir / "implementations" / f"{region_code}.json"),
        "--gateway",
        gateway_address,
        *extra,
    ]


async def start_stub(
    command: Sequence[str], region_code: str, startup_seconds: float = 30.0
) -> StubProcess:
    """Starts one stub and waits for its `listening` announcement."""
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    output: list[str] = []

    async def listening() -> str:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"region stub {region_code} exited before listening:\n" + "".join(output)
                )
            text = line.decode(errors="replace")
            output.append(text)
            with contextlib.suppress(ValueError):
                event = json.loads(text)
                if isinstance(event, dict) and event.get("event") == "listening":
                    return str(event["address"])

    try:
        address = await asyncio.wait_for(listening(), startup_seconds)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    stub = StubProcess(region_code, address, process, output)
    asyncio.get_running_loop().create_task(_drain_output(stub))
    return stub


async def _drain_output(stub: StubProcess) -> None:
    assert stub.process.stdout is not None
    while line := await stub.process.stdout.readline():
        stub.output.append(line.decode(errors="replace"))
        del stub.output[:-200]


async def stop_stub(stub: StubProcess, grace: float = 10.0) -> int:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; returns the exit code."""
    if stub.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            stub.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(stub.process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                stub.process.kill()
            await stub.process.wait()
    return stub.process.returncode or 0


def tls_args(pki: PkiLayout | None, region_code: str) -> list[str]:
    """The stub flags for serving and reporting over mTLS with the dev PKI."""
    if pki is None:
        return []
    server, client = pki.region_servers[region_code], pki.regions[region_code]
    return [
        "--tls-ca",
        str(pki.ca_cert),
        "--tls-cert",
        str(server.cert),
        "--tls-key",
        str(server.key),
        "--client-cert",
        str(client.cert),
        "--client-key",
        str(client.key),
    ]


@contextlib.asynccontextmanager
async def running_federation(
    regions: Sequence[str],
    *,
    data_dir: Path,
    standards_dir: Path,
    gateway_address: str,
    base_port: int = 0,
    extra_args: Sequence[str] = (),
    pki: PkiLayout | None = None,
) -> AsyncIterator[dict[str, StubProcess]]:
    """Starts a stub per region (ports base_port + i, or any free port when 0).

    With `pki`, each stub serves mTLS with its server certificate and reports with its region
    client certificate.
    """
    stubs: dict[str, StubProcess] = {}
    try:
        results = await asyncio.gather(
            *(
                start_stub(
                    stub_command(
                        code,
                        port=base_port + i if base_port else 0,
                        data_dir=data_dir / "regions",
                        standards_dir=standards_dir,
                        gateway_address=gateway_address,
                        extra=[*extra_args, *tls_args(pki, code)],
                    ),
                    code,
                )
                for i, code in enumerate(regions)
            ),
            return_exceptions=True,
        )
        stubs.update({r.region_code: r for r in results if isinstance(r, StubProcess)})
        for result in results:
            if isinstance(result, BaseException):
                raise result
        yield stubs
    finally:
        await asyncio.gather(*(stop_stub(s) for s in stubs.values()))
