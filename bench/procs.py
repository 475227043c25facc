"""The processes under test: started as subprocesses, addressed by their announcement, measured
through /proc (CPU seconds of a process and all its descendants; resident memory)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Proc:
    """A started server process and the address it announced."""

    name: str
    address: str
    process: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it."""
    found = [pid]
    i = 0
    while i < len(found):
        task_dir = Path(f"/proc/{found[i]}/task")
        with contextlib.suppress(OSError):
            for task in task_dir.iterdir():
                with contextlib.suppress(OSError):
                    found.extend(int(c) for c in (task / "children").read_text().split())
        i += 1
    return found


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """User + system CPU seconds of `pid` (and of its live descendants when `tree`)."""
    total = 0
    for p in descendants(pid) if tree else [pid]:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def rss_bytes(pid: int, *, tree: bool = True) -> int:
    """Resident set size of `pid` (and of its live descendants when `tree`)."""
    total = 0
    for p in descendants(pid) if tree else [pid]:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * _PAGE
    return total


async def start(
    name: str,
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    startup: float = 60,
) -> Proc:
    """Starts `command` and waits for its `{"event": "listening", "address": ...}` line."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    assert process.stdout is not None
    output: list[str] = []

    async def listening() -> str:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                raise RuntimeError(f"{name} exited before listening:\n" + "".join(output[-40:]))
            text = line.decode(errors="replace")
            output.append(text)
            with contextlib.suppress(ValueError):
                event = json.loads(text)
                if isinstance(event, dict) and event.get("event") == "listening":
                    return str(event["address"])

    try:
        address = await asyncio.wait_for(listening(), startup)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    proc = Proc(name, address, process, output)
    asyncio.get_running_loop().create_task(_drain(proc))
    return proc


async def _drain(proc: Proc) -> None:
    assert proc.process.stdout is not None
    while line := await proc.process.stdout.readline():
        proc.output.append(line.decode(errors="replace"))
        del proc.output[:-200]


async def stop(proc: Proc, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.process.pid, signal.SIGKILL)
        await proc.process.wait()
