"""`bench.bundles`: its bench-only catalog version is valid and fans out as the bench needs, and a
quick run measures every path and reports every target. No timing is asserted (the machine is
shared and its load moves every absolute figure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bundles
from gateway.catalog import documents
from gateway.catalog.registry import load_provinces

STANDARDS = bundles.ROOT / "standards"


def _implemented(region: str) -> set[str]:
    data = json.loads((STANDARDS / "implementations" / f"{region}.json").read_text("utf-8"))
    return {code for e in data["entries"] if not e["cancel_date"] for code in e["national_codes"]}


def test_the_bench_version_is_2026_1_with_a_valid_theme_of_three_independent_members() -> None:
    data = bundles.bench_catalog(STANDARDS)
    parsed = documents.parse_catalog(data, load_provinces(STANDARDS))
    assert parsed.violations == ()
    assert parsed.value is not None
    base = json.loads((STANDARDS / "catalog" / "2026.1.json").read_text("utf-8"))
    assert {k: v for k, v in data.items() if k not in ("version", "provenance", "themes")} == {
        k: v for k, v in base.items() if k not in ("version", "provenance", "themes")
    }
    assert data["themes"][: len(base["themes"])] == base["themes"]
    assert parsed.value.version == "2026.2"
    assert base["provenance"] in data["provenance"]
    theme = parsed.value.themes["YJS9001"]
    assert {"code", "name", "members", "form", "materials"} <= set(theme.synthetic)
    assert all(not m.after for m in theme.members)
    roles = {r.role: r.region_code for r in bundles.independent("token").roles}
    assert len(set(roles.values())) == len(theme.members) == 3
    for m in theme.members:
        assert m.matter_code in _implemented(roles[m.role]), (m.id, roles[m.role])


def test_the_bench_standards_hold_every_catalog_the_gateway_is_seeded_with(tmp_path: Path) -> None:
    made = bundles.bench_standards(STANDARDS, tmp_path / "standards")
    for name in bundles.BOOTSTRAP:
        assert (made / name).is_file(), name
    assert (made / "regions.json").is_file()
    assert (made / "implementations" / "110000.json").is_file()


@pytest.mark.slow
def test_a_quick_run_measures_every_path_and_reports_the_targets(tmp_path: Path) -> None:
    out, results = tmp_path / "report.json", tmp_path / "RESULTS.md"
    assert bundles.main(["--quick", "--json", str(out), "--results", str(results)]) == 0
    report = json.loads(out.read_text("utf-8"))
    paths = report["paths"]
    assert set(paths["c1"]) == {"application", "bundle"}
    assert set(paths["c16"]) == {
        "application",
        "bundle",
        "application-done",
        "bundle-done",
        "yjs0008-done",
    }
    for by_path in paths.values():
        for row in by_path.values():
            assert row["errors"] == 0
            assert row["operations"] > 0
            assert row["cpu_ms"] > 0
    assert [(t["of"], t["to"], t["target"]) for t in report["targets"]] == [
        ("bundle", "application", 3.3),
        ("yjs0008-done", "application-done", 3.3),
        ("bundle", "application", 1.5),
    ]
    assert all(t["value"] > 0 for t in report["targets"] + report["beside"])
    written = results.read_text("utf-8")
    assert "## Bundle benchmark (一件事)" in written
    assert "- bundle ÷ application, p50 at c1: " in written
    assert "(target ≤ 3.30)" in written
