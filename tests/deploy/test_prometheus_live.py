"""A real Prometheus scrapes a real gateway under a little traffic; its HTTP API answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import socket
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from conftest import World, start_world
from promql import dashboard_exprs
from traffic import submission

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def prometheus(tmp: Path, target: str) -> AsyncIterator[str]:
    """Runs Prometheus on loopback scraping `target` every second; yields its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: run deploy/scripts/ensure-prometheus.sh")
    tmp.mkdir()
    for name in ("rules.yml", "alerts.yml"):
        shutil.copy(RULES / name, tmp / name)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml", "alerts.yml"],
        "scrape_configs": [
            {"job_name": "tongban-gateway", "static_configs": [{"targets": [target]}]}
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    address = f"127.0.0.1:{free_port()}"
    log = (tmp / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address={address}",
        "--log.level=warn",
        stdout=log,
        stderr=log,
    )
    try:
        yield f"http://{address}"
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


async def query(base: str, expr: str) -> list[dict[str, Any]]:
    """The result vector of an instant query; empty while Prometheus is not up yet."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        answer = await asyncio.to_thread(_get, url)
    except OSError:
        return []
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


async def wait_for_number(base: str, expr: str, attempts: int = 240) -> float:
    """Polls `expr` every 0.25 s until it is one finite number; returns it."""
    for _ in range(attempts):
        result = await query(base, expr)
        if result:
            number = float(result[0]["value"][1])
            if math.isfinite(number):
                return number
        await asyncio.sleep(0.25)
    raise AssertionError(f"Prometheus never answered a number for {expr}")


async def traffic(world: World, stop: asyncio.Event) -> int:
    """Submits until told to stop: valid submissions and an invalid one in between."""
    sent = 0
    while not stop.is_set():
        await world.applications.SubmitApplication(submission(world, f"live-{sent}"))
        with contextlib.suppress(grpc.aio.AioRpcError):
            await world.applications.SubmitApplication(
                submission(world, f"bad-{sent}", local_matter_code="NO-SUCH-CODE")
            )
        sent += 1
        await asyncio.sleep(0.1)
    return sent


async def test_prometheus_scrapes_the_gateway(tmp_path: Path) -> None:
    async with start_world(tmp_path / "world", metrics_port=0) as world:
        target = f"{world.gateway.config.host}:{world.gateway.metrics_port}"
        async with prometheus(tmp_path / "prometheus", target) as base:
            stop = asyncio.Event()
            load = asyncio.create_task(traffic(world, stop))
            try:
                assert await wait_for_number(base, 'up{job="tongban-gateway"}') == 1
                p99 = await wait_for_number(
                    base,
                    "histogram_quantile(0.99, sum by (le)"
                    " (rate(grpc_server_handling_seconds_bucket[1m])))",
                )
                assert 0 < p99 < 10
                ok_rate = await wait_for_number(
                    base,
                    'sum(rate(grpc_server_handled_total{grpc_method="SubmitApplication",'
                    'grpc_code="OK"}[1m]))',
                )
                assert ok_rate > 0
                overhead = await wait_for_number(
                    base, "job:tongban_gateway_overhead_seconds:p99_5m"
                )
                assert 0 <= overhead < 10
                # Every call makes at least one attempt here (no breaker opens). The first
                # windows' rate() extrapolates the two counters from samples a scrape apart and
                # may dip under 1: the ratio must reach it, not start there.
                expr = "region:tongban_region_delivery_attempts_per_call:ratio_rate5m"
                attempts = await wait_for_number(base, expr)
                for _ in range(80):
                    if attempts >= 1:
                        break
                    await asyncio.sleep(0.25)
                    attempts = await wait_for_number(base, expr)
                assert attempts >= 1
            finally:
                stop.set()
                sent = await load
            assert sent > 0
            not_found = await wait_for_number(
                base, 'sum(grpc_server_handled_total{grpc_code="NotFound"})'
            )
            assert 0 < not_found <= sent
            assert await wait_for_number(base, "tongban_build_info") == 1
            assert await wait_for_number(base, "tongban_catalog_loaded") == 1
            # Applications being delivered inline count as awaiting delivery: any depth is sane.
            assert await wait_for_number(base, "tongban_queue_depth") >= 0
            assert await wait_for_number(base, "tongban_queue_oldest_age_seconds") >= 0
            rules = await asyncio.to_thread(_get, f"{base}/api/v1/rules")
            unhealthy = [
                rule["name"]
                for group in rules["data"]["groups"]
                for rule in group["rules"]
                if rule.get("health") == "err"
            ]
            assert unhealthy == []
            # Every dashboard panel's query is valid PromQL that the real server evaluates.
            for expr in dashboard_exprs():
                concrete = expr.replace("$__rate_interval", "1m").replace("$job", ".*")
                await query(base, concrete)
            assert await query(base, 'tongban_deliveries_total{job=~".*",outcome="delivered"}')
