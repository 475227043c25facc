"""`python -m bench.soak` (`make soak`): the gateway under a steady open-loop rate for minutes,
its resident memory sampled; reports the RSS slope (least squares after a warm-up) and appends
it to `bench/RESULTS.md`. Not part of `make bench`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import harness, procs, report
from bench.loadgen import Sample, Target, open_loop, percentile


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0 for fewer than two."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


async def soak(minutes: float, rate: float, interval: float, warmup: float, standards: Path) -> str:
    """Runs the soak; returns its Markdown report."""
    started: list[procs.Proc] = []
    with tempfile.TemporaryDirectory(prefix="tongban-soak-") as tmp:
        root = Path(tmp)
        try:
            stubs = {
                r: await procs.start(f"stub {r}", harness.stub_command(r, root / "r", standards))
                for r in (harness.ORIGIN, harness.TARGET)
            }
            started.extend(stubs.values())
            regions = {c: s.address for c, s in stubs.items()}
            gw = await procs.start(
                "gateway", harness.gateway_command(regions, root / "gw", standards, 1)
            )
            started.append(gw)
            token = await harness.issue_licence(regions[harness.ORIGIN])
            template = harness.submission(token)
            await harness.submit_once(gw.address, template)
            target = Target(gw.address, harness.SUBMIT, harness.submit_payloads(template))
            total = Sample()
            points: list[tuple[float, float]] = []
            t0 = time.monotonic()
            end = t0 + minutes * 60
            while time.monotonic() < end:
                total.merge(await open_loop(target, rate=rate, seconds=interval))
                elapsed = time.monotonic() - t0
                rss = procs.rss_bytes(gw.pid) / 2**20
                points.append((elapsed / 60, rss))
                print(f"  {elapsed:6.0f} s  RSS {rss:7.1f} MiB", flush=True)
            await target.close()
        finally:
            for proc in reversed(started):
                await procs.stop(proc)
    steady = [(m, r) for m, r in points if m * 60 >= warmup] or points
    errors = ", ".join(f"{k} {v}" for k, v in sorted(total.errors.items())) or "0"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"## Soak, {now}\n\nMachine: {report.machine()}\n\n"
        f"{minutes:g} min open loop at {rate:g}/s through the gateway (one worker): "
        f"{total.requests} requests, errors {errors}, p99 "
        f"{1000 * percentile(total.latencies, 0.99):.2f} ms. Gateway RSS "
        f"{points[0][1]:.1f} → {points[-1][1]:.1f} MiB; slope after {warmup:g} s of warm-up: "
        f"{slope(steady):+.3f} MiB/min ({len(steady)} samples).\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the soak; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="applications per second")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the slope")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args(argv)
    print(f"soak: {args.minutes:g} min at {args.rate:g}/s; load {os.getloadavg()}", flush=True)
    text = asyncio.run(
        soak(args.minutes, args.rate, args.interval, args.warmup, Path("standards").resolve())
    )
    print(text)
    if not args.no_append:
        report.append(args.results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
