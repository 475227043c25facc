"""The Prometheus rules and alerts: valid, and every alert proven by a `promtool` test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run deploy/scripts/ensure-prometheus.sh (make test does)")
    return path


def run(*args: str) -> str:
    result = subprocess.run(
        [promtool(), *args],
        check=False,
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def alert_names() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_rules_and_config_check() -> None:
    run("check", "rules", "rules.yml", "alerts.yml")
    run("check", "config", "prometheus.yml")


def test_alert_unit_tests_pass() -> None:
    assert "SUCCESS" in run("test", "rules", "alerts_test.yml")


def test_every_alert_has_a_test_that_fires_it() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text(encoding="utf-8"))
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    names = alert_names()
    assert len(names) == len(set(names))
    assert sorted(set(names) - fired) == []


def test_recording_rules_follow_level_metric_operations() -> None:
    groups = yaml.safe_load((PROMETHEUS / "rules.yml").read_text(encoding="utf-8"))["groups"]
    records = [rule["record"] for group in groups for rule in group["rules"]]
    assert records
    for name in records:
        parts = name.split(":")
        assert len(parts) == 3, name
        assert all(parts), name


def test_ensure_prometheus_is_idempotent_and_quiet() -> None:
    script = ROOT / "deploy" / "scripts" / "ensure-prometheus.sh"
    result = subprocess.run(
        ["sh", str(script)], check=False, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


def test_every_alert_links_its_section_of_the_runbook() -> None:
    alerts = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    runbook = (ROOT / "deploy" / "RUNBOOK.md").read_text(encoding="utf-8")
    sections = {
        line.removeprefix("## ").strip().lower()
        for line in runbook.splitlines()
        if line.startswith("## ")
    }
    names = []
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            names.append(rule["alert"])
            url = rule["annotations"]["runbook_url"]
            path, _, anchor = url.partition("#")
            assert path == "deploy/RUNBOOK.md", rule["alert"]
            assert anchor == rule["alert"].lower(), rule["alert"]
            assert anchor in sections, rule["alert"]
    assert names
    assert len(sections) == len(names)  # no section for an alert that does not exist
