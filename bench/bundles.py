"""What a bundle (一件事) costs the gateway against one application, in one run.

    python -m bench.bundles [--quick] [--json FILE] [--results FILE | --no-append]

One gateway (one worker, SQLite) in front of three region stubs (440000, 510000, 110000),
seeded with catalogs 2025.1, 2026.1 and 2026.2: a bench-only version, 2026.1 plus theme
YJS9001 (`bench/data/catalog-2026.2-theme.json`, wholly synthetic), because no theme of
2026.1 has three independent members. The load generator repeats one operation per path
against that one gateway, the paths taking turns segment by segment (`harness.interleave`):

  application       SubmitApplication: the harness's submission (440000 → 510000, 异地就医结算备案,
                    one e-licence verified), committed, delivered, answered DELIVERED
  bundle            SubmitBundle of YJS9001: three independent members (440000 社会保险参保缴费
                    记录查询, 510000 异地就医结算备案, 110000 户籍类证明开具), the applicant's one
                    e-licence verified once for all three, bundle and members committed
                    together, the three delivered in parallel, answered with all DELIVERED
  application-done  `application`, then its province reports it COMPLETED
  bundle-done       `bundle`, then each province reports its member COMPLETED
  yjs0008-done      YJS0008 退休一件事（多地参保） to COMPLETED: submitted (the applicant's
                    e-licence verified once; `records` to 440000 and `earlier` to 510000
                    delivered in the call, `pension` WAITING), both reported COMPLETED, 440000's
                    report carrying the 参保缴费凭证 it issued (verified), `pension` released
                    with that licence (verified again) and delivered to 110000 in the
                    background, then reported COMPLETED. The bench plays the provinces: it
                    learns that `pension` arrived from 110000's stub, not from the gateway.

Every operation carries the same licences, as the harness's submissions do: the applicant's
居民身份证 and (in yjs0008-done) one 参保缴费凭证, issued once before the run, so each path's
verifications are of licences the gateway has seen (its token cache), and a province's status
list never outgrows the gateway's cached copy within the run.

An operation counts only when every call succeeded and every member was delivered (or
completed); anything else is an error named in the table. Each segment is a steady window
(`harness.Options.lead`): the callers run `LEAD` seconds before it opens and are stopped only
after it closes, so an operation of a few hundred milliseconds (a whole bundle at c16) is not
measured partly while the callers ramp up or wind down. CPU per operation is the gateway
process's CPU in the window (the background work of a bundle, its members' releases and its
last advance, included) divided by the operations that ended in it. The stubs' CPU (and the
bench's polling there) is not the gateway's and is shown apart.

Targets (issue 15), each a ratio within the run: gateway CPU per three-member bundle ≤ 3.3×
one application's, at c16, both for `bundle` ÷ `application` (submitted, every member
delivered) and for `yjs0008-done` ÷ `application-done` (to COMPLETED, the release path
included); and p50 of `bundle` ÷ `application` at c1 ≤ 1.5 (the members delivered in
parallel, not in sequence). Absolute figures move with the machine's load; read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from bench import harness, procs, report
from bench.loadgen import CALL_TIMEOUT, Operation, Sample, Target, closed_loop, percentile
from gateway.api.v1 import application_pb2, application_pb2_grpc, bundle_pb2, region_pb2
from gateway.api.v1 import region_pb2_grpc as region_grpc
from region_stubs.admin.v1 import admin_pb2, admin_pb2_grpc

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("RESULTS.md")
THEME_FILE = Path(__file__).with_name("data") / "catalog-2026.2-theme.json"
BASE_VERSION = "2026.1"
"""The catalog version the bench-only version extends."""
BOOTSTRAP = ("catalog/2025.1.json", "catalog/2026.1.json", "catalog/2026.2.json")
SUBMIT_BUNDLE = "/gateway.api.v1.BundleService/SubmitBundle"
INSURED, SECOND, HOME = harness.ORIGIN, harness.TARGET, "110000"
"""440000 issues the applicant's ID licence and the 参保缴费凭证; 510000 is the second province
of each bundle; 110000 the third (YJS0008's province of residence)."""
PARCEL = "11100000000099063Q001"  # 参保缴费凭证, issued by 社会保险参保缴费记录查询
PAPER = application_pb2.PaperMaterial(description="扫描件")
LEAD = 0.5
"""Seconds each segment's callers run before its measured window opens (`harness.Options`)."""
CPU_SCENARIO, LATENCY_SCENARIO = "c16", "c1"
_DELIVERED = application_pb2.APPLICATION_STATE_DELIVERED
_COMPLETED = application_pb2.APPLICATION_STATE_COMPLETED
_WAITING = application_pb2.APPLICATION_STATE_WAITING


@dataclass(frozen=True)
class Settings:
    seconds: float
    """Length of one measured segment."""
    latency_rounds: int
    """Segments per path at c1 (`application` and `bundle`)."""
    cpu_rounds: int
    """Segments per path at c16 (every path)."""
    warmup: float


FULL = Settings(seconds=2.5, latency_rounds=4, cpu_rounds=3, warmup=1.0)
"""About 80 s in all: c1 2 paths × 4 rounds, c16 5 paths × 3 rounds."""
QUICK = Settings(seconds=0.4, latency_rounds=1, cpu_rounds=1, warmup=0.3)


# -- The catalog: 2026.1 and one more theme -----------------------------------------------------


def bench_catalog(standards: Path) -> dict[str, Any]:
    """Catalog version 2026.2 as a document: 2026.1 (same matters, licence types and effective
    time) with the themes of `THEME_FILE` added and its provenance before 2026.1's."""
    base = json.loads((standards / "catalog" / f"{BASE_VERSION}.json").read_text("utf-8"))
    extra = json.loads(THEME_FILE.read_text("utf-8"))
    return {
        **base,
        "version": extra["version"],
        "provenance": f"{extra['provenance']} {base['provenance']}",
        "themes": [*base["themes"], *extra["themes"]],
    }


def bench_standards(standards: Path, into: Path) -> Path:
    """A standards directory at `into`: every file of `standards` (linked) and, beside its
    catalogs, the bench-only `catalog/2026.2.json`."""
    catalogs = into / "catalog"
    catalogs.mkdir(parents=True)
    for entry in standards.iterdir():
        if entry.name != "catalog":
            (into / entry.name).symlink_to(entry.resolve())
    for entry in (standards / "catalog").iterdir():
        (catalogs / entry.name).symlink_to(entry.resolve())
    text = json.dumps(bench_catalog(standards), ensure_ascii=False, indent=1)
    (catalogs / "2026.2.json").write_text(text, encoding="utf-8")
    return into


# -- The submissions ---------------------------------------------------------------------------


def _consent(*flows: tuple[str, str]) -> bundle_pb2.Consent:
    agreed = Timestamp()
    agreed.FromDatetime(dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC))
    return bundle_pb2.Consent(
        flows=[bundle_pb2.FlowConsent(member_id=m, material_id=x) for m, x in flows],
        consent_time=agreed,
        channel="app",
    )


def _applicant() -> application_pb2.Applicant:
    return application_pb2.Applicant(
        id_type=application_pb2.ID_TYPE_CITIZEN_ID,
        id_number=harness.CITIZEN,
        display_name="张三",
    )


def independent(token: str) -> bundle_pb2.SubmitBundleRequest:
    """A YJS9001 bundle filed in 440000: three independent members, one e-licence (`token`,
    the applicant's 居民身份证) for all three."""
    return bundle_pb2.SubmitBundleRequest(
        request_id=str(uuid.uuid4()),
        origin_region=INSURED,
        theme_code="YJS9001",
        roles=[
            bundle_pb2.RoleBinding(role="insured", region_code=INSURED),
            bundle_pb2.RoleBinding(role="residence", region_code=SECOND),
            bundle_pb2.RoleBinding(role="hukou", region_code=HOME),
        ],
        applicant=_applicant(),
        form_fields=[
            application_pb2.FormField(key="id_number", value=harness.CITIZEN),
            application_pb2.FormField(key="name", value="张三"),
        ],
        materials=[
            application_pb2.Material(material_id="TM01", license_token=token),
            application_pb2.Material(
                material_id="TM02", paper=application_pb2.PaperMaterial(description="备案登记表")
            ),
        ],
        consent=_consent(),
    )


def retirement(token: str) -> bundle_pb2.SubmitBundleRequest:
    """A YJS0008 bundle filed in 110000, the province of residence; `token` is the applicant's
    居民身份证, and the 参保缴费凭证 that `records` issues flows into `pension` with consent."""
    return bundle_pb2.SubmitBundleRequest(
        request_id=str(uuid.uuid4()),
        origin_region=HOME,
        theme_code="YJS0008",
        roles=[
            bundle_pb2.RoleBinding(role="insured", region_code=INSURED),
            bundle_pb2.RoleBinding(role="transfer_out", region_code=SECOND),
            bundle_pb2.RoleBinding(role="residence", region_code=HOME),
        ],
        applicant=_applicant(),
        form_fields=[
            application_pb2.FormField(key="id_number", value=harness.CITIZEN),
            application_pb2.FormField(key="name", value="张三"),
            application_pb2.FormField(key="retire_date", value="2026-12-31"),
            application_pb2.FormField(key="bank_account", value="6222020200112233445"),
        ],
        materials=[
            application_pb2.Material(material_id="TM01", license_token=token),
            application_pb2.Material(material_id="TM02", paper=PAPER),
            application_pb2.Material(material_id="TM03", paper=PAPER),
        ],
        consent=_consent(("pension", "M04")),
    )


def application_delivered(reply: bytes) -> str | None:
    """Why a SubmitApplication reply is not a delivered application (None: it is)."""
    app = application_pb2.SubmitApplicationResponse.FromString(reply).application
    return None if app.state == _DELIVERED else "NOT_DELIVERED"


def bundle_delivered(reply: bytes) -> str | None:
    """Why a SubmitBundle reply is not a bundle with every member delivered (None: it is)."""
    members = bundle_pb2.SubmitBundleResponse.FromString(reply).bundle.members
    return None if members and all(m.state == _DELIVERED for m in members) else "NOT_DELIVERED"


# -- Operations of several calls ---------------------------------------------------------------


class Incomplete(Exception):
    """A call answered, but not with what the operation needs; the message names the error."""


def _require(condition: bool, error: str) -> None:
    if not condition:
        raise Incomplete(error)


class Steps:
    """An operation made of several calls (`run`), counted as one: its latency, or the first
    gRPC error or `Incomplete` it met."""

    def __init__(self, run: Callable[[], Awaitable[None]]) -> None:
        self.run = run

    async def once(self, sample: Sample, started: float) -> None:
        try:
            await self.run()
        except grpc.aio.AioRpcError as error:
            sample.errors[error.code().name] += 1
        except Incomplete as error:
            sample.errors[str(error)] += 1
        else:
            sample.latencies.append(time.perf_counter() - started)

    async def close(self) -> None:
        """Nothing: the channels belong to `Federation`."""


def _identity(data: bytes) -> bytes:
    return data


class Federation:
    """The bench's side of the gateway: the platforms that submit and the provinces that
    report, each on one long-lived channel."""

    def __init__(self, gateway: str, stubs: Mapping[str, str]) -> None:
        self.channels = [grpc.aio.insecure_channel(gateway)]
        channel = self.channels[0]
        self.submit_application = channel.unary_unary(
            harness.SUBMIT,
            request_serializer=_identity,
            response_deserializer=application_pb2.SubmitApplicationResponse.FromString,
        )
        self.submit_bundle = channel.unary_unary(
            SUBMIT_BUNDLE,
            request_serializer=_identity,
            response_deserializer=bundle_pb2.SubmitBundleResponse.FromString,
        )
        self.applications = application_pb2_grpc.ApplicationServiceStub(channel)
        self.admin = {}
        self.regions = {}
        for code, address in stubs.items():
            stub_channel = grpc.aio.insecure_channel(address)
            self.channels.append(stub_channel)
            self.admin[code] = admin_pb2_grpc.RegionAdminServiceStub(stub_channel)
            self.regions[code] = region_grpc.RegionServiceStub(stub_channel)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def report(self, name: str, region: str, *issued: str) -> None:
        """`region` reports the application `name` COMPLETED, with the licences it issued."""
        answer = await self.applications.ReportApplicationStatus(
            application_pb2.ReportApplicationStatusRequest(
                name=name,
                region_code=region,
                state=_COMPLETED,
                event_id=str(uuid.uuid4()),
                issued_license_tokens=list(issued),
            ),
            timeout=CALL_TIMEOUT,
        )
        _require(answer.application.state == _COMPLETED, "NOT_COMPLETED")

    async def issue_parcel(self) -> str:
        """A 参保缴费凭证 for the applicant, issued by 440000."""
        issued = await self.admin[INSURED].IssueLicense(
            admin_pb2.IssueLicenseRequest(
                license_type_code=PARCEL,
                license_number=f"JF{uuid.uuid4().hex[:10].upper()}",
                holder_id_type=application_pb2.ID_TYPE_CITIZEN_ID,
                holder_id_number=harness.CITIZEN,
            ),
            timeout=CALL_TIMEOUT,
        )
        return str(issued.token)

    async def arrived(self, member: bundle_pb2.BundleMember) -> None:
        """Returns once the member's province has the case (asked of the province's stub,
        at growing intervals up to 20 ms)."""
        request = region_pb2.GetApplicationStatusRequest(
            application_id=member.application.removeprefix("applications/")
        )
        give_up = time.perf_counter() + CALL_TIMEOUT
        pause = 0.002
        while True:
            try:
                await self.regions[member.target_region].GetApplicationStatus(
                    request, timeout=CALL_TIMEOUT
                )
                return
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            _require(time.perf_counter() < give_up, "NOT_RELEASED")
            await asyncio.sleep(pause)
            pause = min(2 * pause, 0.02)

    async def application_done(self, payload: Callable[[], bytes]) -> None:
        app = (await self.submit_application(payload(), timeout=CALL_TIMEOUT)).application
        _require(app.state == _DELIVERED, "NOT_DELIVERED")
        await self.report(app.name, app.target_region)

    async def bundle_done(self, payload: Callable[[], bytes]) -> None:
        bundle = (await self.submit_bundle(payload(), timeout=CALL_TIMEOUT)).bundle
        _require(all(m.state == _DELIVERED for m in bundle.members), "NOT_DELIVERED")
        await asyncio.gather(*(self.report(m.application, m.target_region) for m in bundle.members))

    async def retirement_done(self, payload: Callable[[], bytes], parcel: str) -> None:
        bundle = (await self.submit_bundle(payload(), timeout=CALL_TIMEOUT)).bundle
        members = {m.member_id: m for m in bundle.members}
        records, earlier, pension = members["records"], members["earlier"], members["pension"]
        _require(
            records.state == earlier.state == _DELIVERED and pension.state == _WAITING,
            "NOT_DELIVERED",
        )
        await asyncio.gather(
            self.report(records.application, records.target_region, parcel),
            self.report(earlier.application, earlier.target_region),
        )
        await self.arrived(pension)
        await self.report(pension.application, pension.target_region)


# -- The run -----------------------------------------------------------------------------------


async def run(settings: Settings, log: Callable[[str], None]) -> list[harness.Result]:
    """Starts the stubs and the gateway, measures every path, stops everything."""
    started: list[procs.Proc] = []
    async with contextlib.AsyncExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tongban-bundles-")))

        async def stop_all() -> None:
            while started:
                await procs.stop(started.pop())

        stack.push_async_callback(stop_all)
        standards = bench_standards(ROOT / "standards", root / "standards")
        stubs = {}
        for region in (INSURED, SECOND, HOME):
            stubs[region] = await procs.start(
                f"stub {region}", harness.stub_command(region, root / "regions", standards)
            )
            started.append(stubs[region])
        regions = {code: stub.address for code, stub in stubs.items()}
        gateway = await procs.start(
            "gateway",
            harness.gateway_command(regions, root / "gateway", standards, 1),
            env={**os.environ, "TONGBAN_BOOTSTRAP_CATALOGS": ",".join(BOOTSTRAP)},
        )
        started.append(gateway)
        log(f"started: stubs {regions}, gateway {gateway.address}")
        federation = Federation(gateway.address, regions)
        stack.push_async_callback(federation.close)
        token = await harness.issue_licence(regions[INSURED])
        parcel = await federation.issue_parcel()
        application = harness.submit_payloads(harness.submission(token))
        bundle = harness.submit_payloads(independent(token))
        one_call = [
            _route(
                "application",
                Target(gateway.address, harness.SUBMIT, application, application_delivered),
                gateway,
                stubs,
            ),
            _route(
                "bundle",
                Target(gateway.address, SUBMIT_BUNDLE, bundle, bundle_delivered),
                gateway,
                stubs,
            ),
        ]
        retiring = harness.submit_payloads(retirement(token))
        done = [
            _route(name, Steps(run), gateway, stubs)
            for name, run in (
                ("application-done", functools.partial(federation.application_done, application)),
                ("bundle-done", functools.partial(federation.bundle_done, bundle)),
                ("yjs0008-done", functools.partial(federation.retirement_done, retiring, parcel)),
            )
        ]
        for target in (r.target for r in one_call):
            stack.push_async_callback(target.close)
        for path in one_call + done:  # once each, every step checked, then warm
            await _first(path)
            await closed_loop(path.target, concurrency=8, seconds=settings.warmup)
        latency = harness.Options(
            seconds=settings.seconds,
            rounds=settings.latency_rounds,
            scenarios=(LATENCY_SCENARIO,),
            lead=LEAD,
        )
        cpu = harness.Options(
            seconds=settings.seconds,
            rounds=settings.cpu_rounds,
            scenarios=(CPU_SCENARIO,),
            lead=LEAD,
        )
        results = await harness.interleave(latency, one_call, log)
        results += await harness.interleave(cpu, one_call + done, log)
        return results


def _route(
    name: str, operation: Operation, gateway: procs.Proc, stubs: Mapping[str, procs.Proc]
) -> harness.Route:
    return harness.Route(name, operation, [gateway.pid], [s.pid for s in stubs.values()])


async def _first(path: harness.Route) -> None:
    sample = Sample()
    await path.target.once(sample, time.perf_counter())
    if sample.errors:
        raise RuntimeError(f"the first {path.name} operation failed: {dict(sample.errors)}")


# -- The report --------------------------------------------------------------------------------


def _row(r: harness.Result) -> dict[str, float]:
    s = r.sample
    return {
        "per_s": s.requests / s.seconds if s.seconds else math.nan,
        "p50_ms": 1000 * percentile(s.latencies, 0.5),
        "p99_ms": 1000 * percentile(s.latencies, 0.99),
        "cpu_ms": r.per_request(r.hop_cpu),
        "stubs_cpu_ms": r.per_request(r.stub_cpu),
        "operations": len(s.latencies),
        "errors": sum(s.errors.values()),
    }


TARGETS = (
    ("cpu", CPU_SCENARIO, "bundle", "application", 3.3),
    ("cpu", CPU_SCENARIO, "yjs0008-done", "application-done", 3.3),
    ("p50", LATENCY_SCENARIO, "bundle", "application", 1.5),
)
"""(figure, scenario, numerator path, denominator path, target): issue 15's acceptance."""
BESIDE = (
    ("cpu", CPU_SCENARIO, "bundle-done", "application-done"),
    ("cpu", CPU_SCENARIO, "yjs0008-done", "bundle-done"),
    ("cpu", LATENCY_SCENARIO, "bundle", "application"),
    ("p50", CPU_SCENARIO, "bundle", "application"),
)
"""Ratios without a target: the fan-out to COMPLETED without a release, what the release path
and the licence flow add, and the same pairs at the other concurrency."""
_FIGURE = {"cpu": "cpu_ms", "p50": "p50_ms"}


def summarize(results: list[harness.Result]) -> dict[str, Any]:
    """The figures of every path in every scenario, and the ratios."""
    paths: dict[str, dict[str, dict[str, float]]] = {}
    for r in results:
        paths.setdefault(r.scenario, {})[r.path] = _row(r)

    def ratio(figure: str, scenario: str, a: str, b: str) -> dict[str, Any]:
        key = _FIGURE[figure]
        num, den = paths[scenario][a][key], paths[scenario][b][key]
        value = num / den if den and not math.isnan(den) else math.nan
        return {"figure": figure, "scenario": scenario, "of": a, "to": b, "value": value}

    targets = [
        {**ratio(f, s, a, b), "target": t, "met": ratio(f, s, a, b)["value"] <= t}
        for f, s, a, b, t in TARGETS
    ]
    return {"paths": paths, "targets": targets, "beside": [ratio(*x) for x in BESIDE]}


def _line(r: Mapping[str, Any], rows: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    key = _FIGURE[r["figure"]]
    what = "gateway CPU per operation" if r["figure"] == "cpu" else "p50"
    a, b = rows[r["scenario"]][r["of"]][key], rows[r["scenario"]][r["to"]][key]
    text = (
        f"- {r['of']} ÷ {r['to']}, {what} at {r['scenario']}: "
        f"{a:.3f} ÷ {b:.3f} ms = {r['value']:.2f}"
    )
    if "target" in r:
        text += f" (target ≤ {r['target']:.2f}): {'met' if r['met'] else 'NOT met'}"
    return text


def render(summary: Mapping[str, Any]) -> str:
    """The table and the ratios, Markdown."""
    lines = [
        "| scenario | path | operations/s | p50 ms | p99 ms | errors "
        "| gateway CPU ms/operation | stubs CPU ms/operation |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = summary["paths"]
    for scenario, by_path in rows.items():
        for name, row in by_path.items():
            lines.append(
                f"| {scenario} | {name} | {row['per_s']:.0f} | {row['p50_ms']:.2f} "
                f"| {row['p99_ms']:.2f} | {row['errors']:.0f} | {row['cpu_ms']:.3f} "
                f"| {row['stubs_cpu_ms']:.3f} |"
            )
    lines += ["", "Against the targets (issue 15; same run, same gateway):", ""]
    lines += [_line(r, rows) for r in summary["targets"]]
    lines += ["", "Beside them (no target):", ""]
    lines += [_line(r, rows) for r in summary["beside"]]
    return "\n".join(lines)


def section(text: str, *, machine_line: str, load_before: str, note: str) -> str:
    """The dated section `bench/RESULTS.md` gets."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_after = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"## Bundle benchmark (一件事), {now}\n\n"
        f"Machine: {machine_line}\n\n"
        f"Load average before / after: {load_before} / {load_after}. {note}\n\n{text}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.bundles", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds: smoke runs")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Markdown file to append")
    parser.add_argument("--no-append", action="store_true", help="print only")
    parser.add_argument("--note", default="", help="a sentence recorded with the figures")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    settings = QUICK if args.quick else FULL
    machine_line = report.machine()
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    results = asyncio.run(run(settings, lambda m: print(m, flush=True)))
    summary = summarize(results)
    note = (
        f"{settings.latency_rounds} interleaved segment(s) of {settings.seconds:g} s per path "
        f"at {LATENCY_SCENARIO}, {settings.cpu_rounds} at {CPU_SCENARIO}"
        f"{' (--quick)' if args.quick else ''}. {args.note}".strip()
    )
    text = section(render(summary), machine_line=machine_line, load_before=load_before, note=note)
    print(text, flush=True)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if not args.no_append:
        report.append(args.results, text)
        print(f"appended to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
