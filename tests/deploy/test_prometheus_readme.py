"""deploy/prometheus/ explains itself: the README its scrape configuration points to exists and
names every file beside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


def test_the_readme_the_scrape_config_points_to_explains_every_file() -> None:
    comment = "".join(
        line
        for line in (PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    )
    pointed = re.findall(r"(deploy/prometheus/[\w.]+\.md)", comment)
    assert pointed == ["deploy/prometheus/README.md"]
    readme = (ROOT / pointed[0]).read_text(encoding="utf-8")
    files = sorted(p.name for p in PROMETHEUS.iterdir() if p.name != "README.md")
    assert files == ["alerts.yml", "alerts_test.yml", "prometheus.yml", "rules.yml"]
    for name in files:
        assert f"| `{name}` |" in readme, name
