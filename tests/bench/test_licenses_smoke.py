"""`bench.licenses` runs and reports every figure; no timing is asserted (the machine is
shared and its load moves every absolute figure)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import licenses


def test_a_quick_run_reports_every_figure(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    assert licenses.main(["--quick", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert set(report["in_process"]) == {"EdDSA", "ES256"}
    for row in report["in_process"].values():
        for name in (
            "bare_decode_per_s",
            "first_sight_per_s",
            "first_sight_ratio",
            "repeat_per_s",
            "repeat_ratio",
        ):
            assert row[name] > 0, name
        assert row["target"] == 0.8
    rpc = report["rpc"]
    assert rpc["noop_per_s"] > 0
    assert rpc["server_cpu_us_noop"] > 0
    assert rpc["target"] == 0.75
    for name in ("verify", "verify_cached"):
        assert set(rpc[name]) == {"per_s", "ratio", "server_cpu_us", "server_cpu_ratio"}
        assert all(value > 0 for value in rpc[name].values())
