"""The dashboard and the rules only read metrics the gateway really exports."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from conftest import start_world
from prometheus_client.parser import text_string_to_metric_families
from promql import dashboard_exprs, metric_names, recorded_names, rule_exprs
from traffic import submission

from gateway.api.v1 import license_pb2

SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
}
PROMETHEUS_OWN = {"up"}


def test_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (region, le) (rate(a_seconds_bucket{x="y:z"}[5m])))'
        " / on (job) group_left b:c:d > 0.05 and sum without (le) (c_total offset 5m)"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b:c:d", "c_total"}


async def test_every_referenced_metric_is_exported(tmp_path: Path) -> None:
    async with start_world(tmp_path, metrics_port=0) as world:
        await world.applications.SubmitApplication(submission(world, "dash-1"))
        await world.licenses.VerifyLicense(license_pb2.VerifyLicenseRequest(token="x"))
        url = f"http://{world.gateway.config.host}:{world.gateway.metrics_port}/metrics"
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url, timeout=5).read().decode()
        )
    exported = set()
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            exported.add(family.name + suffix)
    recorded = recorded_names()
    referenced: dict[str, set[str]] = {}
    for source, exprs in (("dashboard", dashboard_exprs()), ("rules", rule_exprs())):
        for expr in exprs:
            for name in metric_names(expr):
                referenced.setdefault(name, set()).add(source)
    assert len(referenced) > 20
    missing = {
        name: sorted(where)
        for name, where in referenced.items()
        if name not in exported and name not in recorded and name not in PROMETHEUS_OWN
    }
    assert missing == {}
