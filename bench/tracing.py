"""What tracing costs the gateway: CPU per application with tracing off and on, in one run.

    python -m bench.tracing [--quick] [--json FILE] [--baseline TREE | --no-baseline]

Paths, each its own `tongban gateway` process (one worker, SQLite) in front of the same two
region stubs, taking turns segment by segment as in `bench.harness`, all sent the harness's
submission (one e-licence verified, committed, delivered):

  off        TONGBAN_TRACING unset: nothing of tracing installed
  on         TONGBAN_TRACING=true: every span batched (the SDK's BatchSpanProcessor, its
             defaults) and exported over OTLP/gRPC to a collector stand-in in this process,
             which counts what arrives
  unsampled  tracing on with `OTEL_TRACES_SAMPLER=always_off`: the interceptors and the
             listener run, no span is recorded or exported
  baseline   the gateway of the tree before tracing (the parent of the first commit that
             named `TRACING_MARK`, extracted from git), or of `--baseline TREE`: off ÷
             baseline is what tracing costs when it is off

The load is a closed loop of 16 callers; the CPU is the gateway process's alone (the stubs
trace nothing). Ratios within the run are what to read; absolute figures move with the
machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from bench import harness, procs
from bench.loadgen import Operation, Sample, Target, closed_loop, percentile

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
TRACING_MARK = "DeliveryStarted"
"""The event tracing brought into `gateway/`: the tree before the first commit naming it is the
gateway without tracing."""
SPANS_PER_APPLICATION = 7
"""Spans one submission makes when the caches are warm: the RPC, resolution, licence,
commit, delivery call, attempt, and the southbound call."""


@dataclass(frozen=True)
class Settings:
    seconds: float
    rounds: int
    warmup: float


FULL = Settings(seconds=2.5, rounds=4, warmup=1.0)
"""Four rounds of four paths: each path takes each place in the turn once."""
QUICK = Settings(seconds=0.5, rounds=1, warmup=0.3)
SCENARIOS = ("c16",)


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver that keeps nothing but the count."""

    def __init__(self) -> None:
        self.spans = 0

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def tree_before_tracing(into: Path) -> Path | None:
    """The source tree before tracing, extracted under `into`; None when git cannot say."""
    found = subprocess.run(
        ["git", "log", "--reverse", "--format=%H", "-S", TRACING_MARK, "--", "gateway"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    first = found.stdout.split()
    if found.returncode != 0 or not first:
        return None
    archive = subprocess.run(
        ["git", "archive", f"{first[0]}^"], cwd=ROOT, capture_output=True, check=False
    )
    if archive.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


async def run(
    settings: Settings, baseline: Path | None, log: Callable[[str], None]
) -> dict[str, Any]:
    """Starts the stubs, the gateways and the collector, measures, stops; the report.

    `baseline` is the tree of the baseline gateway; None measures off and on only."""
    started: list[procs.Proc] = []
    targets: list[Operation] = []
    collector = Collector()
    async with contextlib.AsyncExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tongban-tracing-")))
        sink = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, sink)  # type: ignore[no-untyped-call]
        sink_port = sink.add_insecure_port("127.0.0.1:0")
        await sink.start()
        stack.push_async_callback(sink.stop, None)

        async def stop_all() -> None:
            while targets:
                await targets.pop().close()
            while started:  # SIGTERM: a gateway's exit flushes the spans its batch holds
                await procs.stop(started.pop())

        stack.push_async_callback(stop_all)
        standards = (ROOT / "standards").resolve()
        stubs = {}
        for region in (harness.ORIGIN, harness.TARGET):
            stubs[region] = await procs.start(
                f"stub {region}", harness.stub_command(region, root / "regions", standards)
            )
            started.append(stubs[region])
        regions = {code: stub.address for code, stub in stubs.items()}
        off = {k: v for k, v in os.environ.items() if k != "TONGBAN_TRACING"}
        on = {
            **off,
            "TONGBAN_TRACING": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
        }
        environments = {
            "off": off,
            "on": on,
            "unsampled": {**on, "OTEL_TRACES_SAMPLER": "always_off"},
        }
        if baseline is not None:
            environments["baseline"] = {**off, "PYTHONPATH": str(baseline)}
        gateways = {}
        for name, env in environments.items():
            gateways[name] = await procs.start(
                f"gateway {name}",
                harness.gateway_command(regions, root / name, standards, 1),
                env=env,
                cwd=str(baseline) if name == "baseline" else None,
            )
            started.append(gateways[name])
        log("started: " + ", ".join(f"{name} {g.address}" for name, g in gateways.items()))
        token = await harness.issue_licence(regions[harness.ORIGIN])
        template = harness.submission(token)
        answered = dict.fromkeys(gateways, 1)
        for gateway in gateways.values():
            await harness.submit_once(gateway.address, template)
        submit = harness.submit_payloads(template)
        stub_pids = [s.pid for s in stubs.values()]
        paths = [
            harness.Route(name, Target(g.address, harness.SUBMIT, submit), [g.pid], stub_pids)
            for name, g in gateways.items()
        ]
        targets.extend(p.target for p in paths)
        for path in paths:
            warm = await closed_loop(path.target, concurrency=8, seconds=settings.warmup)
            answered[path.name] += warm.requests
        options = harness.Options(
            seconds=settings.seconds, rounds=settings.rounds, scenarios=SCENARIOS
        )
        results = await harness.interleave(options, paths, log)
        for result in results:
            answered[result.path] += result.sample.requests
        await stop_all()
    return _report(results, collector.spans / answered["on"])


def _per_path(results: list[harness.Result]) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for r in results:
        row = rows.setdefault(r.path, {})
        sample: Sample = r.sample
        row["errors"] = sum(sample.errors.values())
        row["per_s"] = sample.requests / sample.seconds if sample.seconds else math.nan
        row["cpu_ms"] = r.per_request(r.hop_cpu)
        row["p50_ms"] = 1000 * percentile(sample.latencies, 0.5)
    return rows


def _ratio(rows: dict[str, dict[str, float]], a: str, b: str) -> dict[str, float]:
    return {
        "cpu": rows[a]["cpu_ms"] / rows[b]["cpu_ms"],
        "p50": rows[a]["p50_ms"] / rows[b]["p50_ms"],
    }


def _report(results: list[harness.Result], spans: float) -> dict[str, Any]:
    rows = _per_path(results)
    report: dict[str, Any] = {
        "paths": rows,
        "on_over_off": _ratio(rows, "on", "off"),
        "unsampled_over_off": _ratio(rows, "unsampled", "off"),
        "spans_per_application": spans,
    }
    if "baseline" in rows:
        report["off_over_baseline"] = _ratio(rows, "off", "baseline")
    return report


def render(report: dict[str, Any]) -> str:
    """The report as the lines `make bench` prints (and `bench/RESULTS.md` records)."""
    lines = [
        "| path | applications/s | gateway CPU ms/application | p50 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in report["paths"].items():
        lines.append(
            f"| {name} | {row['per_s']:.0f} | {row['cpu_ms']:.3f} | {row['p50_ms']:.2f} | "
            f"{row['errors']:.0f} |"
        )
    on, unsampled = report["on_over_off"], report["unsampled_over_off"]
    lines += [
        "",
        f"- on ÷ off: CPU per application ×{on['cpu']:.2f}, p50 ×{on['p50']:.2f}; "
        f"{report['spans_per_application']:.2f} spans exported per application "
        f"({SPANS_PER_APPLICATION} made by each)",
        f"- unsampled ÷ off (instrumented, nothing recorded): CPU per application "
        f"×{unsampled['cpu']:.2f}, p50 ×{unsampled['p50']:.2f}",
    ]
    off = report.get("off_over_baseline")
    if off is None:
        lines.append("- off ÷ baseline: not measured (no tree before tracing)")
    else:
        lines.append(
            f"- off ÷ baseline (the tree before tracing): CPU per application "
            f"×{off['cpu']:.2f}, p50 ×{off['p50']:.2f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds: smoke runs")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--baseline", type=Path, help="the tree whose gateway is the baseline")
    parser.add_argument("--no-baseline", action="store_true", help="measure off and on only")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    settings = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="tongban-baseline-") as tmp:
        baseline: Path | None = None
        if args.baseline:
            baseline = args.baseline.resolve()
        elif not args.no_baseline:
            baseline = tree_before_tracing(Path(tmp))
            if baseline is None:
                print("no baseline: git finds no tree before tracing here", flush=True)
        report = asyncio.run(run(settings, baseline, lambda m: print(m, flush=True)))
    print("Tracing: the gateway's CPU per application, off and on (c16, same run)")
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
