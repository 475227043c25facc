"""The processes under test: started as subprocesses, addressed by their announcement, measured
through /proc (CPU seconds of a process and all its descendants; resident memory)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from gateway.tools.federation import AnnouncedProcess, start_announced, stop_announced

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


Proc = AnnouncedProcess


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
    """Starts `command` in its own process group; waits for its `listening` announcement."""
    return await start_announced(
        name, command, env=env, cwd=cwd, new_session=True, startup_seconds=startup
    )


async def stop(proc: Proc, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL of its whole process group after `grace` seconds."""
    await stop_announced(proc, grace)
