"""Smoke test for bench/catalog_scale.py: `--quick` runs end to end and reports every figure.

Only the report's shape is checked: the figures are timings on a shared machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.catalog_scale", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for label in ("publish+activate", "memory", "translate", "RPC ResolveLocalCode"):
        assert label in done.stdout
    report = json.loads(out.read_text("utf-8"))
    machine = report["machine"]
    assert machine["nproc"] >= 1
    assert {"cpu_model", "python", "packages"} <= machine.keys()
    assert report["data"]["mappings"] == 50_000
    assert report["data"]["provinces"] == 31
    assert len(report["data"]["dialects"]) == 5
    assert report["data"]["one_to_many_rows"] > 0
    assert report["data"]["retired_rows"] > 0
    activate = report["activate"]
    assert activate["publish_activate_seconds"] > 0
    assert activate["reader_reads"] > 0
    assert activate["reader_max_stall_ms"] > 0
    assert report["restart"]["load_seconds"] > 0
    assert report["memory"]["rss_bytes_per_mapping"] > 0
    assert report["memory"]["retained_bytes_per_mapping"] > 0
    for kind in ("timer", "lookup", "resolve", "resolve+targets", "translate"):
        figures = report["in_process"][kind]
        assert 0 < figures["p50_us"] <= figures["p99_us"] <= figures["max_us"]
        assert figures["per_second"] > 0
        assert len(report["in_process"]["gc_collections"][kind]) == 3
        assert len(figures["round_p99_us"]) == report["in_process"]["rounds"] == 2
        assert figures["p99_us"] == sorted(figures["round_p99_us"])[0]  # the lower median of 2
    rpc = report["rpc"]
    for kind in ("noop", "resolve", "empty"):
        assert rpc[kind]["per_second"] > 0
        assert rpc[kind]["errors"] == 0
        assert rpc[kind]["client_cpu_us_per_call"] > 0
    assert len(rpc["round_ratios"]) == rpc["rounds"] == 3
    assert rpc["response_bytes"] > 100  # the no-op answers with a real resolve response
    for key in ("ratio", "pooled_ratio", "empty_ratio", "cpu_ratio"):
        assert rpc[key] > 0
    assert set(report["verdict"]) == set(report["targets"])
    assert all(isinstance(v, bool) for v in report["verdict"].values())
