"""`tongban gateway --workers N`: N gateway processes serving one port, one SQLite store.

Invariants:
- Each worker is a whole gateway in its own process (started with exec, never forked: gRPC
  must not be forked once it exists) with its own worker id; the kernel spreads incoming
  connections across them (`SO_REUSEPORT`, set on every gateway server). A connection, and so
  every call on it, stays with one worker.
- They share the store file: SQLite's locks serialize their write transactions (WAL, a busy
  timeout), so the idempotency claim and `Store.claim_due` leases are atomic across processes:
  a queued application is delivered by exactly one worker at a time, and a dead worker's
  leases expire into another's dispatcher.
- The first worker starts alone and seeds a fresh store; the others start once it listens,
  so two workers never bootstrap the same store at once.
- Port 0 is resolved here, once: a `SO_REUSEPORT` socket bound (not listening, so it takes no
  connections) to a free port holds it until every worker has bound the same port.
- The supervisor announces `{"event": "listening", "service": "gateway", "address", "workers",
  "pids"}` once all workers listen; SIGINT/SIGTERM is passed to every worker, each drains
  gracefully; if one worker exits, the others are stopped and the exit status is non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence

from gateway.app.serving import announce, stop_event_on_signals

STARTUP_SECONDS = 60.0
STOP_GRACE = 30.0


def worker_argv(argv: Sequence[str], port: int) -> list[str]:
    """`argv` (of `tongban`) without `--workers` and with `--port` set to `port`."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--workers", "--port"):
            skip = True
            continue
        if arg.startswith(("--workers=", "--port=")):
            continue
        out.append(arg)
    return [*out, "--port", str(port)]


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket holding `port` (a free one for 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def _start(argv: Sequence[str], index: int) -> tuple[asyncio.subprocess.Process, str]:
    environment = {**os.environ, "TONGBAN_WORKER_INDEX": str(index)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.tools.cli",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        env=environment,
    )
    assert process.stdout is not None
    while True:
        line = await asyncio.wait_for(process.stdout.readline(), STARTUP_SECONDS)
        if not line:
            raise RuntimeError(f"gateway worker {process.pid} exited before listening")
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "listening":
                asyncio.get_running_loop().create_task(_relay(process))
                return process, str(event["address"])


async def _relay(process: asyncio.subprocess.Process) -> None:
    """Keeps reading a worker's stdout so it never blocks on a full pipe."""
    assert process.stdout is not None
    while await process.stdout.readline():
        pass


async def _stop(processes: Sequence[asyncio.subprocess.Process]) -> None:
    for p in processes:
        if p.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            await asyncio.wait_for(p.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            await p.wait()


async def supervise(argv: Sequence[str], *, host: str, port: int, workers: int) -> int:
    """Runs `workers` gateways on one port until SIGINT/SIGTERM; returns the exit status."""
    stop = stop_event_on_signals()
    processes: list[asyncio.subprocess.Process] = []
    holder = reserve_port(host, port)
    try:
        bound = holder.getsockname()[1]
        child = worker_argv(argv, bound)
        first, address = await _start(child, 0)
        processes.append(first)
        rest = await asyncio.gather(*(_start(child, i) for i in range(1, workers)))
        processes.extend(p for p, _ in rest)
    except BaseException:
        await _stop(processes)
        raise
    finally:
        holder.close()
    announce(
        "listening",
        service="gateway",
        address=address,
        workers=workers,
        pids=[p.pid for p in processes],
    )
    exits = [asyncio.create_task(p.wait()) for p in processes]
    stopping = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
    failed = stopping not in done
    stopping.cancel()
    announce("stopping", service="gateway")
    await _stop(processes)
    return 1 if failed else 0
