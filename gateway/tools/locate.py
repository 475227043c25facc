"""Where the CLI finds a federation's files, from wherever it runs.

- The data directory of `tongban up` (its store, audit log and development PKI) is
  `$TONGBAN_DATA_DIR`, else `./data`.
- A client command finds the PKI to take its certificate from in `--pki-dir`, else
  `$TONGBAN_DATA_DIR/pki`, else the nearest `data/pki` in the working directory or above it
  (the repository root when run from inside the repository).
- The standards data (regions, catalogs, implementation lists) is `--standards-dir`, else
  `$TONGBAN_STANDARDS_DIR`, else the nearest `standards/` in the working directory or above it.
- What is not found is a `CommandError` saying where the CLI looked and what points it
  elsewhere; nothing falls back to something else silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gateway.tools.exits import CommandError

DATA_DIR_ENV = "TONGBAN_DATA_DIR"
STANDARDS_DIR_ENV = "TONGBAN_STANDARDS_DIR"
DATA_DIR = Path("data")
"""The data directory when `$TONGBAN_DATA_DIR` is not set (relative to the working directory)."""
PKI = "pki"
"""The PKI's directory inside a data directory."""
PKI_MARK = "ca.pem"
STANDARDS = Path("standards")
STANDARDS_MARK = "regions.json"


def data_dir(env: Mapping[str, str]) -> Path:
    """The data directory of `tongban up` and `tongban certs`."""
    return Path(env.get(DATA_DIR_ENV) or DATA_DIR)


def nearest(start: Path, relative: Path) -> Path | None:
    """`relative` under `start` or the nearest of its ancestors that holds it."""
    for directory in (start, *start.parents):
        if (directory / relative).exists():
            return directory / relative
    return None


def pki_dir(given: str | None, env: Mapping[str, str], cwd: Path) -> Path:
    """The PKI a client command takes its certificate from (see the module's rules)."""
    if given:
        found = Path(given)
        if not (found / PKI_MARK).is_file():
            raise CommandError(
                f"--pki-dir {given}: no PKI there (no {PKI_MARK}): give the directory "
                "`tongban up` made (its data directory's pki/), or --ca/--cert/--key"
            )
        return found
    if env.get(DATA_DIR_ENV):
        found = Path(env[DATA_DIR_ENV]) / PKI
        if not (found / PKI_MARK).is_file():
            raise CommandError(
                f"{DATA_DIR_ENV}={env[DATA_DIR_ENV]}: no PKI in {found} (no {PKI_MARK}): run "
                "`tongban up` or `tongban certs` with that data directory, or give --pki-dir "
                "or --ca/--cert/--key"
            )
        return found
    mark = nearest(cwd, DATA_DIR / PKI / PKI_MARK)
    if mark is None:
        raise CommandError(
            f"no federation PKI: no {DATA_DIR / PKI / PKI_MARK} in {cwd} or any directory above "
            f"it, and {DATA_DIR_ENV} is not set; run where `tongban up` keeps its data, set "
            f"{DATA_DIR_ENV}, or give --pki-dir or --ca/--cert/--key (--insecure: plaintext, "
            "for a gateway that serves it)"
        )
    return mark.parent


def standards_dir(given: str | None, env: Mapping[str, str], cwd: Path) -> Path:
    """The standards data a command reads (see the module's rules)."""
    if given:
        return checked_standards(Path(given), "--standards-dir")
    if env.get(STANDARDS_DIR_ENV):
        return checked_standards(Path(env[STANDARDS_DIR_ENV]), STANDARDS_DIR_ENV)
    mark = nearest(cwd, STANDARDS / STANDARDS_MARK)
    if mark is None:
        raise CommandError(
            f"no standards data: no {STANDARDS / STANDARDS_MARK} in {cwd} or any directory "
            "above it; run inside the repository, or give --standards-dir or "
            f"{STANDARDS_DIR_ENV}"
        )
    return mark.parent


def checked_standards(path: Path, named_by: str) -> Path:
    """`path` if it holds standards data; `named_by` is what named it, for the message."""
    if not (path / STANDARDS_MARK).is_file():
        raise CommandError(
            f"no standards data in {path.absolute()} (no {STANDARDS_MARK}), named by {named_by}: "
            f"give the repository's standards/ directory with --standards-dir or "
            f"{STANDARDS_DIR_ENV}"
        )
    return path
