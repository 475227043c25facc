"""A PostgreSQL for the tests: the server running on this machine, else a private one.

Order of choice, for the whole session (`server_url`):
1. `TONGBAN_TEST_POSTGRES`, a `postgresql://` URL of a server the tests may create databases
   on (used as given: if it does not answer, the tests that need it fail; a password goes in
   `PGPASSWORD`, not in the URL), or `private` to skip the running server and start a private
   one (3.);
2. the server on 127.0.0.1:5432 as user `postgres`, if one answers (trust authentication, as
   on the development machines and CI);
3. a private server started from the installed binaries (`initdb`, `pg_ctl`) in a temporary
   directory on a free port, stopped at the end of the session;
4. none: the tests that need PostgreSQL fail (`pytest.fail`), saying how to install it. Never
   a silent skip.

Each session gets a database of its own (`session_database`, dropped at the end), each test a
schema of its own in it (`fresh_schema`, dropped after the test), named in the URL's
`search_path`. A test whose subject creates its own databases (the benchmark) is given the
server itself.

`PrivatePostgres` is also what fault tests use to stop and start a server under a store. As
root (CI, containers), the server runs as the `postgres` user (or `nobody`): PostgreSQL
refuses to run as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

T = TypeVar("T")

URL_VARIABLE = "TONGBAN_TEST_POSTGRES"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
INSTALL_HINT = (
    "the PostgreSQL tests need a PostgreSQL server: none was given or answers on "
    "127.0.0.1:5432, and no server binaries (initdb, pg_ctl) were found on PATH or under "
    "/usr/lib/postgresql/*/bin to start one. "
    "Install them with `apt-get install postgresql` (Debian, Ubuntu), or set "
    f"{URL_VARIABLE} to the postgresql:// URL of a server the tests may create databases on."
)


def with_query(url: str, **params: str) -> str:
    """`url` with query parameters added (or replaced)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | params
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_database(url: str, database: str) -> str:
    """`url` naming another database on the same server."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def find_binaries() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`: from PATH, else Debian's versioned
    directories (the newest first), which the `postgresql` package does not put on PATH."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versioned = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for bindir in [*versioned, Path("/usr/local/pgsql/bin")]:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivatePostgres:
    """A PostgreSQL server of the tests' own, in a temporary directory, on 127.0.0.1."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="tongban-pg-"))  # short: the socket lives here
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._user = _unprivileged_user()
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)

    @classmethod
    def create(cls) -> PrivatePostgres:
        """Initializes and starts a new server; without binaries, fails the test asking for
        them (never a skip)."""
        bindir = find_binaries()
        if bindir is None:
            pytest.fail(INSTALL_HINT, pytrace=False)
        server = cls(bindir)
        try:
            server._run(
                "initdb",
                "-D",
                str(server.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            )
            server.start()
        except BaseException:
            server.destroy()
            raise
        return server

    @property
    def url(self) -> str:
        """The superuser's URL to the `postgres` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Starts the server (again) and waits until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stops the server (`fast`: in-flight transactions are rolled back, clients cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        """Stops the server if it runs and deletes its directory."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        user = self._user
        command = [str(self.bindir / program), *args]
        as_user: dict[str, Any] = {}
        if user is not None and (setpriv := shutil.which("setpriv")):
            # The user is switched by setpriv, not by subprocess: with `user=` Python 3.11
            # forks instead of vforking, and a fork while gRPC threads run (a test stopping
            # the server under a gateway) may crash the child in gRPC's fork handlers.
            ids = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
            command = [setpriv, *ids, *command]
        elif user is not None:
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.root,
            **as_user,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise subprocess.CalledProcessError(
                result.returncode, program, result.stdout, result.stderr + log
            )


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    pytest.fail("running as root, with no `postgres` or `nobody` user to run PostgreSQL as")


async def answers(url: str) -> bool:
    """Whether a server accepts a connection at `url`."""
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    await conn.close()
    return True


async def execute(url: str, *statements: str) -> None:
    """Runs `statements` on one connection to `url`."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def database_exists(url: str, database: str) -> bool:
    """Whether the server at `url` holds a database named `database`."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        found = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
    finally:
        await conn.close()
    return found is not None


def run_apart(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs `coroutine` to completion in a thread of its own (its own event loop), leaving the
    test's event loop alone: for session setup done outside any test."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


@contextlib.contextmanager
def server_url(environ: Mapping[str, str]) -> Iterator[str]:
    """The URL of a server the tests may create databases on, chosen as the module doc says;
    a private server is stopped and deleted afterwards."""
    private: PrivatePostgres | None = None
    url = environ.get(URL_VARIABLE, "")
    if not url and run_apart(answers(LOCAL_URL)):
        url = LOCAL_URL
    if url in ("", "private"):
        private = PrivatePostgres.create()
        url = private.url
    try:
        yield url
    finally:
        if private is not None:
            private.destroy()


@contextlib.contextmanager
def session_database(server: str) -> Iterator[str]:
    """The URL of a database created on `server` for this session, dropped afterwards."""
    database = f"tongban_test_{uuid.uuid4().hex[:12]}"
    run_apart(execute(server, f"CREATE DATABASE {database}"))
    try:
        yield with_database(server, database)
    finally:
        run_apart(execute(server, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))


@contextlib.contextmanager
def fresh_schema(database_url: str) -> Iterator[str]:
    """A new, empty schema in the database; yields a URL whose `search_path` is it.

    Synchronous (the statements run apart) so that async fixtures can ask for it too."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    run_apart(execute(database_url, f"CREATE SCHEMA {schema}"))
    try:
        yield with_query(database_url, search_path=schema)
    finally:
        run_apart(execute(database_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
