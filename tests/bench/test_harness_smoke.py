"""The benchmark harness starts every process, measures each path briefly and prints its table.

A smoke run, not a benchmark: it asserts what was measured and printed, never how fast. The
PostgreSQL paths run on the tests' server (`postgres_server`: the running one, else a private
one, else the test fails), on a database the bench creates and drops.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pg
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_run_prints_the_table_and_the_ratios(tmp_path: Path, postgres_server: str) -> None:
    results = tmp_path / "RESULTS.md"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--seconds",
            "0.3",
            "--scenarios",
            "c1,c16,open300",
            "--workers",
            "1",
            "--replicas",
            "1,2",
            "--postgres",
            postgres_server,
            "--only-applications",
            "--results",
            str(results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "| scenario | path | req/s |" in out
    for path in ("direct", "proxy", "durable", "gateway"):
        assert f"| c1 | {path} |" in out
    assert "| open300 | gateway |" in out
    assert "gateway÷proxy" in out
    assert "durable÷proxy" in out
    assert "Against the targets (gateway ÷ durable floor, same run)" in out
    assert "- gateway ÷ durable, CPU per application at c16: " in out
    assert "- gateway ÷ durable, p50 at c1: " in out
    assert "- gateway ÷ durable, p99 in the open loop at 300/s: " in out
    assert "PostgreSQL paths skipped" not in out
    rows = {row.split("|")[2].strip(): row for row in out.splitlines() if row.startswith("| c16 |")}
    for path in ("durable-pg", "gateway-pg", "gateway-pg×2"):
        assert f"| c1 | {path} |" in out
        if urlsplit(postgres_server).hostname in ("127.0.0.1", "localhost"):
            db_cell = rows[path].split("|")[-2].strip()
            assert db_cell != "—", f"the server's backends for {path} were not read"
    assert "durable-pg÷proxy" in out
    assert re.search(
        r"- gateway-pg ÷ durable-pg, CPU per application at c16: [\d.]+ ÷ [\d.]+ ms = [\d.]+ "
        r"\(target ≤ 1\.50\): (met|NOT met); the database server's CPU per application "
        r"beside it: ",
        out,
    ), out
    assert "- gateway-pg×2 (2 replicas, one database) at c16: " in out
    created = re.search(r"PostgreSQL paths on database (tongban_bench_\w+)", out)
    assert created is not None
    left = pg.run_apart(pg.database_exists(postgres_server, created[1]))
    assert not left, f"the bench left its database {created[1]} behind"
    written = results.read_text(encoding="utf-8")
    assert "## Application benchmark" in written
    assert "Machine: " in written
