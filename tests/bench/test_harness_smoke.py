"""The benchmark harness starts every process, measures each path briefly and prints its table.

A smoke run, not a benchmark: it asserts what was measured and printed, never how fast.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_run_prints_the_table_and_the_ratios(tmp_path: Path) -> None:
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
    written = results.read_text(encoding="utf-8")
    assert "## Application benchmark" in written
    assert "Machine: " in written
