"""The benchmark's table, its ratios against the targets of issue 8, and `bench/RESULTS.md`."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
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


def _db_per_request(r: Result) -> float:
    """The database server's CPU ms per request (NaN: no server, or unreadable backends)."""
    return r.per_request(r.db_cpu) if r.db_cpu is not None else math.nan


def _db_cpu(r: Result) -> str:
    value = _db_per_request(r)
    return "—" if math.isnan(value) else f"{value:.3f}"  # 0.000 is a reading


def table(results: list[Result]) -> str:
    """A Markdown table: one row per scenario and path."""
    lines = [
        "| scenario | path | req/s | p50 ms | p90 ms | p99 ms | errors | CPU ms/req hop "
        "| stubs | loadgen | db |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        s = r.sample
        lat = s.latencies
        errors = ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "0"
        rate = s.requests / s.seconds if s.seconds else 0.0
        lines.append(
            f"| {r.scenario} | {r.path} | {rate:.0f} | {_ms(percentile(lat, 0.5))} "
            f"| {_ms(percentile(lat, 0.9))} | {_ms(percentile(lat, 0.99))} | {errors} "
            f"| {_cpu(r, r.hop_cpu)} | {_cpu(r, r.stub_cpu)} | {_cpu(r, r.loadgen_cpu)} "
            f"| {_db_cpu(r)} |"
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


def targets(results: list[Result]) -> str:
    """Each target against the durable floor (the proxy plus the two store writes the
    guarantees require), measured in the same run, with a verdict."""
    out = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for scenario in ("c16", "c64"):
        g, d = _find(results, scenario, "gateway"), _find(results, scenario, "durable")
        if g and d:
            cpu = _cpu_ratio(g, d)
            out.append(
                f"- gateway ÷ durable, CPU per application at {scenario}: "
                f"{g.per_request(g.hop_cpu):.3f} ÷ {d.per_request(d.hop_cpu):.3f} ms = "
                f"{cpu:.2f} (target ≤ 1.50): {verdict(cpu <= 1.5)}"
            )
    g, d = _find(results, "c1", "gateway"), _find(results, "c1", "durable")
    if g and d:
        gp50, dp50 = (percentile(x.sample.latencies, 0.5) for x in (g, d))
        ratio = _ratio(gp50, dp50)
        out.append(
            f"- gateway ÷ durable, p50 at c1: {_ms(gp50)} ÷ {_ms(dp50)} ms = {ratio:.2f} "
            f"(target ≤ 1.40): {verdict(ratio <= 1.4)}"
        )
    for scenario in ("open300", "open500"):
        g, d = _find(results, scenario, "gateway"), _find(results, scenario, "durable")
        if g and d:
            gp99, dp99 = (percentile(x.sample.latencies, 0.99) for x in (g, d))
            errors = sum(g.sample.errors.values())
            ratio = _ratio(gp99, dp99)
            limit = " (target ≤ 2.00, no errors)" if scenario == "open300" else ""
            ok = f": {verdict(ratio <= 2.0 and errors == 0)}" if limit else ""
            out.append(
                f"- gateway ÷ durable, p99 in the open loop at {scenario[4:]}/s: "
                f"{_ms(gp99)} ÷ {_ms(dp99)} ms = {ratio:.2f}, {errors} errors{limit}{ok}"
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


def postgres_targets(results: list[Result]) -> str:
    """The gateway on PostgreSQL against its PostgreSQL floor, with the database server's CPU
    beside it, and what a second replica on the same database does."""
    out = []
    for scenario in ("c16", "c64"):
        g, d = _find(results, scenario, "gateway-pg"), _find(results, scenario, "durable-pg")
        if g and d:
            cpu = _cpu_ratio(g, d)
            server = _ratio(_db_per_request(g), _db_per_request(d))
            out.append(
                f"- gateway-pg ÷ durable-pg, CPU per application at {scenario}: "
                f"{g.per_request(g.hop_cpu):.3f} ÷ {d.per_request(d.hop_cpu):.3f} ms = "
                f"{cpu:.2f} (target ≤ 1.50): {'met' if cpu <= 1.5 else 'NOT met'}; "
                f"the database server's CPU per application beside it: "
                f"{_db_cpu(g)} ÷ {_db_cpu(d)} ms = {server:.2f}"
            )
    for scenario in ("c16", "c64"):
        one = _find(results, scenario, "gateway-pg")
        for r in results:
            if r.scenario != scenario or not r.path.startswith("gateway-pg×") or one is None:
                continue
            out.append(
                f"- {r.path} ({r.path.rsplit('×', 1)[1]} replicas, one database) at {scenario}: "
                f"{_rate(r):.0f}/s ({_rate_ratio(r, one):.2f}× one replica), "
                f"CPU {r.per_request(r.hop_cpu):.3f} ms/req ({_cpu_ratio(r, one):.2f}×), "
                f"database server {_db_cpu(r)} ms/req"
            )
    return "\n".join(out)


def _postgres_section(results: list[Result]) -> str:
    if not any(r.path == "durable-pg" for r in results):
        return "PostgreSQL paths: not measured in this run.\n"
    return (
        f"The durable floor on PostgreSQL ÷ bare proxy:\n\n{ratios(results, 'durable-pg')}\n\n"
        f"On PostgreSQL (gateway-pg ÷ its floor durable-pg, same run; the database server's "
        f"CPU is its backends' for that path, column db):\n\n{postgres_targets(results)}\n"
    )


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
        f"Against the targets (gateway ÷ durable floor, same run):\n\n{targets(results)}\n\n"
        f"{_postgres_section(results)}"
    )


def append(path: Path, text: str) -> None:
    """Appends a report to `path` (created with a heading if absent)."""
    if not path.exists():
        path.write_text("# Benchmark results\n\nNewest last. `make bench` appends here.\n\n")
    with path.open("a", encoding="utf-8") as f:
        f.write("\n" + text)
