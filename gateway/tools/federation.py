"""A local federation: one region stub process per province, for `tongban up`, demos and tests.

Each stub is a real process (`python -m region_stubs`), started with its province's
implementation list, the national catalogs, the gateway's licence trust list when there is one
(so that it issues on request what the gateway trusts it with) and its own data directory; it
announces its address as a JSON line, which is how the federation learns ports (port 0 works).
Stopping sends SIGTERM and waits, then kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.security.pki import PkiLayout

DEFAULT_REGIONS = ("440000", "510000", "330000", "110000", "370000", "520000", "420000")


@dataclass
class AnnouncedProcess:
    """A server process we started, and the address it announced."""

    name: str
    address: str
    process: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)
    """Its latest output lines, for diagnostics."""

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid


class DidNotStart(RuntimeError):
    """A server process exited before announcing its address."""

    def __init__(self, name: str, output: Sequence[str]) -> None:
        super().__init__(f"{name} exited before listening:\n" + "".join(output[-40:]))
        self.name = name
        """Which process."""
        self.last_words = next((line.strip() for line in reversed(output) if line.strip()), "")
        """Its last line of output (a stub says there why it cannot start)."""


def stub_command(
    region_code: str,
    *,
    port: int,
    data_dir: Path,
    standards_dir: Path,
    gateway_address: str,
    license_trust: Path | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of one stub."""
    trust = [] if license_trust is None else ["--license-trust", str(license_trust)]
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
        "--catalog-dir",
        str(standards_dir / "catalog"),
        "--gateway",
        gateway_address,
        *trust,
        *extra,
    ]


async def start_announced(
    name: str,
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    new_session: bool = False,
    startup_seconds: float = 30.0,
) -> AnnouncedProcess:
    """Starts `command` and waits for its `{"event": "listening", "address": ...}` line
    (`DidNotStart` if it exits first).

    With `new_session` the process leads its own process group, which `stop_announced` kills
    whole (a supervisor with worker children).
    """
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=new_session,
    )
    assert process.stdout is not None
    output: list[str] = []

    async def listening() -> str:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                raise DidNotStart(name, output)
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
    started = AnnouncedProcess(name, address, process, output)
    asyncio.get_running_loop().create_task(_drain_output(started))
    return started


async def _drain_output(started: AnnouncedProcess) -> None:
    assert started.process.stdout is not None
    while line := await started.process.stdout.readline():
        started.output.append(line.decode(errors="replace"))
        del started.output[:-200]


async def stop_announced(started: AnnouncedProcess, grace: float = 10.0) -> int:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL (its whole group if it leads one)."""
    process = started.process
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(process.pid) == process.pid:
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
            await process.wait()
    return process.returncode or 0


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
    license_trust: Path | None = None,
) -> AsyncIterator[dict[str, AnnouncedProcess]]:
    """Starts a stub per region (ports base_port + i, or any free port when 0).

    With `pki`, each stub serves mTLS with its server certificate and reports with its region
    client certificate. `license_trust` is the gateway's trust list file, if it has one.
    """
    stubs: dict[str, AnnouncedProcess] = {}
    try:
        results = await asyncio.gather(
            *(
                start_announced(
                    code,
                    stub_command(
                        code,
                        port=base_port + i if base_port else 0,
                        data_dir=data_dir / "regions",
                        standards_dir=standards_dir,
                        gateway_address=gateway_address,
                        license_trust=license_trust,
                        extra=[*extra_args, *tls_args(pki, code)],
                    ),
                )
                for i, code in enumerate(regions)
            ),
            return_exceptions=True,
        )
        stubs.update({r.name: r for r in results if isinstance(r, AnnouncedProcess)})
        for result in results:
            if isinstance(result, BaseException):
                raise result
        yield stubs
    finally:
        await asyncio.gather(*(stop_announced(s) for s in stubs.values()))
