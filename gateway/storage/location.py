"""Where the store lives: a SQLite file, or a PostgreSQL database named by a URL whose
password is kept apart (out of the URL, `repr` and every message).

Driver-free, so that reading the configuration loads no database driver; the backends
themselves are opened by `storage.backends.open_store`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

SCHEMES = ("postgresql", "postgres")


def split_password(url: str) -> tuple[str, str | None]:
    """`url` without its password (from the user info or a `password` query parameter), and
    that password (None when it has none). Raises ValueError for what is not such a URL,
    without repeating the URL (it may hold the password)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"a PostgreSQL store is a postgresql:// URL, not {parts.scheme}://")
    password = None
    netloc = parts.netloc
    userinfo, at, hostinfo = netloc.rpartition("@")
    user, colon, secret = userinfo.partition(":")
    if at and colon:
        password = unquote(secret)
        netloc = f"{user}@{hostinfo}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key == "password" for key, _ in pairs):
        password = next(value for key, value in reversed(pairs) if key == "password")
        query = urlencode([(key, value) for key, value in pairs if key != "password"])
    # Rebuilt by hand: urlunsplit drops the `//` of an empty host (a Unix-socket URL).
    rebuilt = f"{parts.scheme}://{netloc}{parts.path}"
    rebuilt += f"?{query}" if query else ""
    rebuilt += f"#{parts.fragment}" if parts.fragment else ""
    return rebuilt, password


@dataclass(frozen=True)
class PostgresConfig:
    """A PostgreSQL database to store in, and the pool that reaches it."""

    url: str
    """`postgresql://user@host:port/database?setting=value`, without a password (query
    settings other than libpq's own become session settings, e.g. `search_path`)."""
    password: str | None = field(default=None, repr=False)
    """The password, kept out of `url`, `repr` and every message."""
    password_file: Path | None = None
    """A file holding the password instead (a mounted Secret): read at every new connection,
    so a rotated password is used without a restart."""
    pool_size: int = 10
    """Most connections open at once."""

    def __post_init__(self) -> None:
        _, password = split_password(self.url)
        if password is not None:
            raise ValueError("the URL of a PostgresConfig carries no password: pass it apart")
        if self.pool_size < 1:
            raise ValueError("the pool holds at least one connection")
        if self.password is not None and self.password_file is not None:
            raise ValueError("a password and a password file: give one")

    def read_password(self) -> str | None:
        """The password now: given, or read from `password_file` (OSError if unreadable)."""
        if self.password_file is None:
            return self.password
        return self.read_password_file(self.password_file)

    @staticmethod
    def read_password_file(path: Path) -> str:
        """The password a file holds (its last line break dropped)."""
        return path.read_text(encoding="utf-8").rstrip("\r\n")

    def __str__(self) -> str:
        return self.url


StoreConfig = Path | PostgresConfig
"""Where the store lives: a SQLite file (by path), or a PostgreSQL database."""
