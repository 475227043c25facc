"""`bench.tracing` runs every path and reports every figure; no timing is asserted (the machine is
shared and its load moves every absolute figure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import tracing


def test_a_quick_run_reports_every_path_and_counts_the_spans(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    assert tracing.main(["--quick", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text(encoding="utf-8"))
    paths = report["paths"]
    assert {"off", "on", "unsampled"} <= set(paths)
    for row in paths.values():
        assert row["errors"] == 0
        assert row["per_s"] > 0
        assert row["cpu_ms"] > 0
    # Every application's spans reached the collector (and the first one's licence fetches).
    assert tracing.SPANS_PER_APPLICATION <= report["spans_per_application"] < 7.5
    assert report["on_over_off"]["cpu"] > 0
    assert report["unsampled_over_off"]["cpu"] > 0
    # A clone with its history measures the tree before tracing as well.
    assert ("baseline" in paths) == ("off_over_baseline" in report)


def test_the_tree_before_tracing_has_no_tracing(tmp_path: Path) -> None:
    tree = tracing.tree_before_tracing(tmp_path)
    if tree is None:
        pytest.skip("a checkout without history: the bench says so and measures off and on")
    assert (tree / "gateway" / "events.py").is_file()
    assert tracing.TRACING_MARK not in (tree / "gateway" / "events.py").read_text("utf-8")
    assert not (tree / "gateway" / "observability" / "tracing.py").exists()
