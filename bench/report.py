"""The benchmark's table, its ratios against the targets of issue 8, and `bench/RESULTS.md`."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from bench.harness import Result
from bench.loadgen import percentile

PACKAGES = ("grpcio", "protobuf", "pyjwt", "cryptography", "tenacity", "prometheus-client")


def machine() -> str:
    """CPU model, cores, kernel, Python and package versions, load average now."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}; {'; '.join(versions)}; load average {load}"
    )


def _ms(seconds: float) -> str:
    return "—" if math.isnan(seconds) else f"{1000 * seconds:.2f}"


def _cpu(r: Result, seconds: float) -> str:
    value = r.per_request(seconds)
    return "—" if math.isnan(value) or seconds == 0 else f"{value:.3f}"


def table(results: list[Result]) -> str:
    """A Markdown table: one row per scenario and path."""
    lines = [
        "| scenario | path | req/s | p50 ms | p90 ms | p99 ms | errors | CPU ms/req hop "
        "| stubs | loadgen |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        s = r.sample
        lat = s.latencies
        errors = ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "0"
        rate = s.requests / s.seconds if s.seconds else 0.0
        lines.append(
            f"| {r.scenario} | {r.path} | {rate:.0f} | {_ms(percentile(lat, 0.5))} "
            f"| {_ms(percentile(lat, 0.9))} | {_ms(percentile(lat, 0.99))} | {errors} "
            f"| {_cpu(r, r.hop_cpu)} | {_cpu(r, r.stub_cpu)} | {_cpu(r, r.loadgen_cpu)} |"
        )
    return "\n".join(lines)


def _find(results: list[Result], scenario: str, path: str) -> Result | None:
    return next((r for r in results if r.scenario == scenario and r.path == path), None)


def _rate(r: Result) -> float:
    return r.sample.requests / r.sample.seconds if r.sample.seconds else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else float("nan")


def _cpu_ratio(a: Result, b: Result) -> float:
    return _ratio(a.per_request(a.hop_cpu), b.per_request(b.hop_cpu))


def _rate_ratio(a: Result, b: Result) -> float:
    return _ratio(_rate(a), _rate(b))


def _p50_ratio(a: Result, b: Result) -> float:
    return _ratio(percentile(a.sample.latencies, 0.5), percentile(b.sample.latencies, 0.5))


def ratios(results: list[Result], gateway: str = "gateway") -> str:
    """(gateway)/(proxy) for CPU per request, throughput and p99, per scenario."""
    lines = [
        f"| scenario | CPU/req {gateway}÷proxy | throughput {gateway}÷proxy "
        f"| p99 {gateway}÷proxy |",
        "|---|---:|---:|---:|",
    ]
    for scenario in dict.fromkeys(r.scenario for r in results):
        g, p = _find(results, scenario, gateway), _find(results, scenario, "proxy")
        if g is None or p is None:
            continue
        cpu, rate = _cpu_ratio(g, p), _rate_ratio(g, p)
        p99 = _ratio(percentile(g.sample.latencies, 0.99), percentile(p.sample.latencies, 0.99))
        lines.append(f"| {scenario} | {cpu:.2f} | {rate:.2f} | {p99:.2f} |")
    return "\n".join(lines)


def baseline_ratios(results: list[Result]) -> str:
    """gateway ÷ baseline (an earlier tree's gateway), when one was measured."""
    lines = []
    for scenario in dict.fromkeys(r.scenario for r in results):
        g, b = _find(results, scenario, "gateway"), _find(results, scenario, "baseline")
        if g is None or b is None:
            continue
        lines.append(
            f"| {scenario} | {_cpu_ratio(g, b):.2f} | {_rate_ratio(g, b):.2f} "
            f"| {_p50_ratio(g, b):.2f} |"
        )
    if not lines:
        return ""
    head = "| scenario | CPU/req gateway÷baseline | throughput | p50 |\n|---|---:|---:|---:|\n"
    return "Against the baseline tree (same run):\n\n" + head + "\n".join(lines) + "\n\n"


def _floor(results: list[Result], scenario: str, value: Callable[[Result, Result], float]) -> str:
    """` (durable floor: X)`: the same figure for the durable path, when it was measured."""
    d, p = _find(results, scenario, "durable"), _find(results, scenario, "proxy")
    return f" (durable floor: {value(d, p):.2f})" if d and p else ""


def targets(results: list[Result]) -> str:
    """Each target of issue 8 with the measured figure, the durable floor's, and a verdict."""
    out = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    cpus: list[float] = []
    shown: list[str] = []
    for scenario in ("c16", "c64"):
        g, p = _find(results, scenario, "gateway"), _find(results, scenario, "proxy")
        if g and p:
            cpus.append(_cpu_ratio(g, p))
            shown.append(f"{cpus[-1]:.2f}{_floor(results, scenario, _cpu_ratio)}")
            rate = _rate_ratio(g, p)
            out.append(
                f"- throughput at {scenario}: gateway {_rate(g):.0f}/s = {rate:.2f}× proxy "
                f"{_rate(p):.0f}/s{_floor(results, scenario, _rate_ratio)} (target ≥ 0.80): "
                f"{verdict(rate >= 0.8)}"
            )
    if cpus:
        out.insert(
            0,
            f"- CPU per routed application (c16, c64): {', '.join(shown)}× the proxy's per call "
            f"(target ≤ 1.30): {verdict(max(cpus) <= 1.3)}",
        )
    g, p, d = (_find(results, "c1", x) for x in ("gateway", "proxy", "direct"))
    if g and p and d:
        gp50, pp50, dp50 = (percentile(x.sample.latencies, 0.5) for x in (g, p, d))
        added_g, added_p = gp50 - dp50, pp50 - dp50
        out.append(
            f"- latency at c1: p50 gateway {_ms(gp50)} ms, proxy {_ms(pp50)} ms, direct "
            f"{_ms(dp50)} ms; p50 gateway÷proxy {_p50_ratio(g, p):.2f}"
            f"{_floor(results, 'c1', _p50_ratio)} (target ≤ 1.30): "
            f"{verdict(_p50_ratio(g, p) <= 1.3)}; added over direct: gateway "
            f"{_ms(added_g)} ms vs proxy hop {_ms(added_p)} ms = {_ratio(added_g, added_p):.1f}×"
        )
    o = _find(results, "open500", "gateway")
    if o:
        p99 = percentile(o.sample.latencies, 0.99)
        errors = sum(o.sample.errors.values())
        below = ", ".join(
            f"{path} {_ms(percentile(r.sample.latencies, 0.99))} ms"
            for path in ("direct", "proxy", "durable")
            if (r := _find(results, "open500", path)) is not None
        )
        out.append(
            f"- open loop 500/s: gateway p99 {_ms(p99)} ms, {errors} errors"
            f"{f' (p99 {below})' if below else ''} (target < 15 ms, none): "
            f"{verdict(p99 < 0.015 and errors == 0)}"
        )
    for n in ("gateway×2",):
        for scenario in ("c16", "c64"):
            w, one = _find(results, scenario, n), _find(results, scenario, "gateway")
            if w and one:
                out.append(
                    f"- {n} at {scenario}: {_rate(w):.0f}/s ({_rate_ratio(w, one):.2f}× "
                    f"one worker), CPU {w.per_request(w.hop_cpu):.3f} ms/req "
                    f"({_cpu_ratio(w, one):.2f}×)"
                )
    return "\n".join(out)


def render(results: list[Result], *, machine_line: str, load_before: str, note: str) -> str:
    """The whole report, Markdown."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_after = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"## Application benchmark, {now}\n\n"
        f"Machine: {machine_line}\n\n"
        f"Load average before / after: {load_before} / {load_after}. {note}\n\n"
        f"{table(results)}\n\n"
        f"Ratios (gateway ÷ bare proxy, same run):\n\n{ratios(results)}\n\n"
        f"The durable floor (the proxy plus the gateway's two store writes) ÷ bare proxy:\n\n"
        f"{ratios(results, 'durable')}\n\n"
        f"{baseline_ratios(results)}"
        f"Against the targets of issue 8:\n\n{targets(results)}\n"
    )


def append(path: Path, text: str) -> None:
    """Appends a report to `path` (created with a heading if absent)."""
    if not path.exists():
        path.write_text("# Benchmark results\n\nNewest last. `make bench` appends here.\n\n")
    with path.open("a", encoding="utf-8") as f:
        f.write("\n" + text)
