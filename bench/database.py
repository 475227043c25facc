"""The PostgreSQL server behind the benchmark's `-pg` paths: a fresh database for each run, and
the CPU the server spends serving each path.

The server is reached through an administrative URL (by default the one on 127.0.0.1:5432 as
`postgres`, trust authentication) whose role may create databases and see every session. Each
run creates `tongban_bench_<random>`, gives each path a store URL naming that database and an
`application_name` of the path's own, and drops the database (`WITH (FORCE)`) at the end. A
password stays out of the URLs: the processes get it as `PGPASSWORD`.

The server's CPU for a path is that of its backends: PostgreSQL serves each connection with a
process of its own, so a path's backends are the pids `pg_stat_activity` lists for the bench
database under the path's `application_name`, and their user + system CPU is read from
/proc/<pid>/stat. That needs the server on this machine, in the same pid namespace (a pid whose
/proc/<pid>/comm is not `postgres` is not counted; a path none of whose backends could be read
shows no figure). Not counted: the server's shared processes (WAL writer, checkpointer,
background writer), which serve every database on the server (a committing backend flushes the
WAL itself under `synchronous_commit = on`), and a backend that exits within a segment (the
store's pool keeps its connections unless idle for five minutes).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from bench import procs
from gateway.storage.location import split_password

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
"""The server the PostgreSQL paths use unless told otherwise."""
HINT = (
    "to measure them, run a PostgreSQL server (`apt-get install postgresql`) the bench can reach "
    "as a role that may create databases (a password in PGPASSWORD, or `trust` for 127.0.0.1 "
    "in pg_hba.conf), or pass `--postgres URL` naming one; `--no-postgres` leaves these paths "
    "out without this line"
)
CONNECT_TIMEOUT = 5.0


async def unreachable(admin_url: str) -> str | None:
    """Why the server at `admin_url` cannot serve the bench (None: it can)."""
    try:
        url, password = split_password(admin_url)
    except ValueError as error:
        return str(error)
    try:
        conn = await asyncpg.connect(url, password=password, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        return f"no PostgreSQL answers at {url} ({type(error).__name__}: {error})"
    await conn.close()
    return None


class Database:
    """The bench's database on the server, and a monitoring session reading its backends."""

    def __init__(self, name: str, url: str, password: str | None, monitor: asyncpg.Connection):
        self.name = name
        self._url = url
        self._password = password
        self._monitor = monitor

    def store_url(self, application: str) -> str:
        """The `--store` URL for the processes of one path (no password)."""
        parts = urlsplit(self._url)
        query = dict(parse_qsl(parts.query)) | {"application_name": application}
        return urlunsplit(parts._replace(path=f"/{self.name}", query=urlencode(query)))

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` plus the password, for the processes that connect."""
        extra = {"PGPASSWORD": self._password} if self._password is not None else {}
        return {**base, **extra}

    async def backend_cpu(self, application: str) -> dict[int, float]:
        """CPU seconds so far of each backend serving `application` in this database."""
        rows = await self._monitor.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
            self.name,
            application,
        )
        return _server_cpu(row["pid"] for row in rows)


def _server_cpu(pids: Iterable[int]) -> dict[int, float]:
    """CPU seconds of those of `pids` that are PostgreSQL processes on this machine."""
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres":
                found[pid] = procs.cpu_seconds(pid, tree=False)
    return found


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the backends spent between two readings (NaN when none could be read).

    A backend that started in between counts from zero."""
    if not after:
        return float("nan")
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


@contextlib.asynccontextmanager
async def fresh(admin_url: str) -> AsyncIterator[Database]:
    """A new database on the server at `admin_url`, dropped on exit."""
    url, password = split_password(admin_url)
    name = f"tongban_bench_{uuid.uuid4().hex[:12]}"
    monitor = await asyncpg.connect(url, password=password, timeout=CONNECT_TIMEOUT)
    try:
        await monitor.execute(f"CREATE DATABASE {name}")
        try:
            yield Database(name, url, password, monitor)
        finally:
            await monitor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await monitor.close()
