"""The application benchmark: a region stub called directly, through a bare proxy, and through
the gateway, measured in the same run, interleaved, with the same payloads.

Paths (every one a separate process, started here on port 0):
  direct    the load generator → region stub 510000 `DeliverApplication`
  proxy     the load generator → `bench.proxy` (raw bytes) → the same stub, same method
  durable   the same through `bench.proxy --store`: each call also makes the gateway's two
            durable writes (claim before forwarding, outcome after), the floor for a gateway
            that never loses an application
  gateway   the load generator → `tongban gateway` `SubmitApplication`: validated, resolved and
            translated, one e-licence verified, committed durably, delivered, answered
  gateway×N the same with `--workers N` (N processes on one port)
  durable-pg   `bench.proxy --store postgresql://…`: the durable floor on PostgreSQL (the same
            two writes, each its own transaction through the store's pool)
  gateway-pg   the gateway with `--store postgresql://…`
  gateway-pg×N N gateway replicas (one worker each, each its own port) on the one database;
            the load generator's target takes the replicas in turn, call by call

The PostgreSQL paths use a database created for the run on the server `Options.postgres`
names and dropped at the end (`bench.database`); with no server answering they are left out,
saying so. Each has its own `application_name`, so the server's CPU for it is that of its own
backends (column "db").

The DeliverApplication payload is the very application the gateway delivers (the province view
of a first submission); every call gets a fresh application id / request id (the stub and the
gateway deduplicate on them). Scenarios run one after another; within a scenario the paths take
turns, segment by segment, so the machine's background load falls on all of them alike.
CPU per request is read from /proc for every process (a gateway with workers: the whole tree).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench import database, procs
from bench.loadgen import Operation, Sample, Target, closed_loop, open_loop
from gateway.api.v1 import application_pb2, application_pb2_grpc, bundle_pb2, region_pb2
from gateway.routing.deliverer import province_view
from region_stubs.admin.v1 import admin_pb2, admin_pb2_grpc

ORIGIN, TARGET = "440000", "510000"
LOCAL_CODE = "11440000MBFYX5N41F2002035011000"  # 广东's code for 异地就医结算备案
CITIZEN = "110105199003071239"
ID_CARD = "11100000000013127D001"  # 居民身份证, which may stand in for material M01
DELIVER = "/gateway.api.v1.RegionService/DeliverApplication"
SUBMIT = "/gateway.api.v1.ApplicationService/SubmitApplication"


@dataclass(frozen=True)
class Scenario:
    """One load shape."""

    name: str
    concurrency: int = 0
    """Closed loop callers; 0 for open loop."""
    rate: float = 0.0
    """Open loop calls per second."""

    async def run(self, target: Operation, seconds: float) -> Sample:
        """One segment of this load against `target`."""
        if self.concurrency:
            return await closed_loop(target, concurrency=self.concurrency, seconds=seconds)
        return await open_loop(target, rate=self.rate, seconds=seconds)


SCENARIOS = {
    "c1": Scenario("c1", concurrency=1),
    "c16": Scenario("c16", concurrency=16),
    "c64": Scenario("c64", concurrency=64),
    "open300": Scenario("open300", rate=300.0),
    "open500": Scenario("open500", rate=500.0),
}


@dataclass
class Route:
    """One way to the stub, and the processes whose CPU it costs."""

    name: str
    target: Operation
    hop: list[int]
    """Pids of the hop between the load generator and the stub (none for direct)."""
    backends: list[int]
    """Pids of the region stubs it uses."""
    db: tuple[database.Database, str] | None = None
    """The PostgreSQL database it stores in and its `application_name` there (None: none)."""


@dataclass
class Result:
    """A path's figures in one scenario, summed over its segments."""

    scenario: str
    path: str
    sample: Sample = field(default_factory=Sample)
    hop_cpu: float = 0.0
    stub_cpu: float = 0.0
    loadgen_cpu: float = 0.0
    db_cpu: float | None = None
    """CPU seconds of the database server's backends serving it (None: no database server;
    NaN: they could not be read)."""

    def per_request(self, seconds: float) -> float:
        """CPU milliseconds per completed request."""
        n = self.sample.requests
        return 1000.0 * seconds / n if n else float("nan")


@dataclass(frozen=True)
class Options:
    """How long and what to measure."""

    seconds: float = 4.0
    """Length of one measured segment."""
    rounds: int = 2
    """Segments per path and scenario."""
    scenarios: Sequence[str] = ("c1", "c16", "c64", "open300")
    workers: Sequence[int] = (1, 2)
    """Gateway worker counts measured (each its own gateway)."""
    postgres: str | None = database.LOCAL_URL
    """A PostgreSQL server the bench may create a database on, for the `-pg` paths (None:
    no PostgreSQL paths)."""
    replicas: Sequence[int] = (1, 2)
    """Gateway replica counts measured on PostgreSQL (each its own set of gateways)."""
    warmup: float = 1.0
    lead: float = 0.0
    """Seconds a closed-loop segment runs before its measured window opens (0: the segment is
    measured whole, from its first call to its last answer). With a lead the window is steady:
    the calls in flight at its edges are neither waited for nor counted, so an operation that
    takes long is not measured partly while the callers ramp up or wind down."""
    standards_dir: Path = Path("standards")
    baseline: Path | None = None
    """Another source tree (e.g. `git archive` of an earlier commit) whose gateway is measured
    too, as path `baseline`: an optimization's effect in the same run."""


def submission(token: str) -> application_pb2.SubmitApplicationRequest:
    return application_pb2.SubmitApplicationRequest(
        request_id=str(uuid.uuid4()),
        origin_region=ORIGIN,
        target_region=TARGET,
        local_matter_code=LOCAL_CODE,
        applicant=application_pb2.Applicant(
            id_type=application_pb2.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
        ),
        form_fields=[
            application_pb2.FormField(key="destination_city", value="成都"),
            application_pb2.FormField(key="hospital", value="四川大学华西医院"),
            application_pb2.FormField(key="insurance_type", value="职工基本医疗保险"),
            application_pb2.FormField(key="phone", value="13800000000"),
        ],
        materials=[
            application_pb2.Material(material_id="M01", license_token=token),
            application_pb2.Material(
                material_id="M03", paper=application_pb2.PaperMaterial(description="备案登记表")
            ),
        ],
    )


def submit_payloads(
    template: application_pb2.SubmitApplicationRequest | bundle_pb2.SubmitBundleRequest,
) -> Callable[[], bytes]:
    """Serialized submissions (of applications or of bundles) differing only in request id.

    A later occurrence of a scalar field wins when protobuf parses, so appending a serialized
    `request_id` to the template bytes is the same message as setting it, at a fraction of
    the load generator's CPU.
    """
    base = template.SerializeToString()
    kind = type(template)

    def payload() -> bytes:
        return base + kind(request_id=str(uuid.uuid4())).SerializeToString()

    return payload


def deliver_payloads(app: application_pb2.Application) -> Callable[[], bytes]:
    """Serialized deliveries of `app` differing only in application id (and name).

    Appended bytes of the embedded message field merge into it, scalars last-wins.
    """
    base = region_pb2.DeliverApplicationRequest(application=app, attempt=1).SerializeToString()

    def payload() -> bytes:
        application_id = str(uuid.uuid4())
        suffix = region_pb2.DeliverApplicationRequest(
            application=application_pb2.Application(
                application_id=application_id, name=f"applications/{application_id}"
            )
        )
        return base + suffix.SerializeToString()

    return payload


def stub_command(region: str, data_dir: Path, standards: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "region_stubs",
        "--region",
        region,
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        "--implementation-list",
        str(standards / "implementations" / f"{region}.json"),
    ]


def gateway_command(
    regions: dict[str, str],
    data_dir: Path,
    standards: Path,
    workers: int,
    *,
    cli: str = "gateway.tools.cli",
    store: str | None = None,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        cli,
        "--log-level",
        "WARNING",
        "gateway",
        "--insecure",
        "--port",
        "0",
        "--regions",
        ",".join(f"{c}={a}" for c, a in regions.items()),
        "--data-dir",
        str(data_dir),
        "--standards-dir",
        str(standards),
        "--metrics-port",
        "-1",
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    if store is not None:
        command += ["--store", store]
    return command


class _Reading:
    """CPU readings of a path's processes around a measured window, added to its result."""

    def __init__(self, path: Route, result: Result, loadgen_pid: int) -> None:
        self.path = path
        self.result = result
        self.loadgen_pid = loadgen_pid
        self._db0: dict[int, float] = {}
        self._hop0 = self._stub0 = self._gen0 = 0.0

    async def open(self) -> None:
        path = self.path
        self._db0 = await path.db[0].backend_cpu(path.db[1]) if path.db else {}
        self._hop0 = sum(procs.cpu_seconds(p) for p in path.hop)
        self._stub0 = sum(procs.cpu_seconds(p) for p in path.backends)
        self._gen0 = procs.cpu_seconds(self.loadgen_pid, tree=False)

    async def close(self) -> None:
        path, result = self.path, self.result
        result.hop_cpu += sum(procs.cpu_seconds(p) for p in path.hop) - self._hop0
        result.stub_cpu += sum(procs.cpu_seconds(p) for p in path.backends) - self._stub0
        result.loadgen_cpu += procs.cpu_seconds(self.loadgen_pid, tree=False) - self._gen0
        if path.db:
            db1 = await path.db[0].backend_cpu(path.db[1])
            result.db_cpu = (result.db_cpu or 0.0) + database.spent(self._db0, db1)


async def _measure(
    scenario: Scenario, path: Route, options: Options, result: Result, loadgen_pid: int
) -> None:
    reading = _Reading(path, result, loadgen_pid)
    if options.lead and scenario.concurrency:
        sample = await closed_loop(
            path.target,
            concurrency=scenario.concurrency,
            seconds=options.seconds,
            lead=options.lead,
            window=reading,
        )
    else:
        await reading.open()
        sample = await scenario.run(path.target, options.seconds)
        await reading.close()
    result.sample.merge(sample)


async def run(options: Options, log: Callable[[str], None] = print) -> list[Result]:
    """Starts everything, measures every scenario on every path, stops everything."""
    started: list[procs.Proc] = []
    targets: list[Operation] = []
    async with contextlib.AsyncExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tongban-bench-")))
        db = await _postgres(options, stack, log)

        async def stop_all() -> None:
            for target in targets:
                await target.close()
            for proc in reversed(started):
                await procs.stop(proc)

        stack.push_async_callback(stop_all)  # before the database is dropped
        standards = options.standards_dir.resolve()
        stubs = {
            region: await procs.start(
                f"stub {region}", stub_command(region, root / "regions", standards)
            )
            for region in (ORIGIN, TARGET)
        }
        started.extend(stubs.values())
        regions = {code: stub.address for code, stub in stubs.items()}
        proxy_command = [sys.executable, "-m", "bench.proxy", "--port", "0"]
        proxy_command += ["--target", regions[TARGET]]
        proxy = await procs.start("proxy", proxy_command)
        started.append(proxy)
        store = root / "durable" / "store.db"
        durable = await procs.start("durable", [*proxy_command, "--store", str(store)])
        started.append(durable)
        gateways = {}
        for n in options.workers:
            gw = await procs.start(
                f"gateway×{n}",
                gateway_command(regions, root / f"gateway-{n}", standards, n),
            )
            started.append(gw)
            gateways[n] = gw
        baseline = None
        if options.baseline is not None:
            tree = str(options.baseline.resolve())
            # A tree from before the CLI moved into gateway.tools names it gateway.cli.
            cli = (
                "gateway.tools.cli"
                if (options.baseline / "gateway" / "tools").is_dir()
                else "gateway.cli"
            )
            baseline = await procs.start(
                "baseline",
                gateway_command(regions, root / "gateway-baseline", standards, 1, cli=cli),
                env={**os.environ, "PYTHONPATH": tree},
                cwd=tree,
            )
            started.append(baseline)
        log(
            f"started: stubs {regions}, proxy {proxy.address}, "
            + ", ".join(f"gateway×{n} {g.address}" for n, g in gateways.items())
        )
        token = await issue_licence(regions[ORIGIN])
        template = submission(token)
        first = await submit_once(gateways[options.workers[0]].address, template)
        deliver = deliver_payloads(province_view(first))
        submit = submit_payloads(template)
        stub_pids = [stubs[TARGET].pid]
        paths = [
            Route("direct", Target(regions[TARGET], DELIVER, deliver), [], stub_pids),
            Route("proxy", Target(proxy.address, DELIVER, deliver), [proxy.pid], stub_pids),
            Route("durable", Target(durable.address, DELIVER, deliver), [durable.pid], stub_pids),
        ]
        all_stub_pids = [s.pid for s in stubs.values()]
        for n, gw in gateways.items():
            name = "gateway" if n == 1 else f"gateway×{n}"
            paths.append(Route(name, Target(gw.address, SUBMIT, submit), [gw.pid], all_stub_pids))
        if db is not None:
            paths += await _postgres_paths(
                db,
                options,
                store_proxy=[*proxy_command, "--store"],
                stubs=stubs,
                root=root,
                started=started,
                deliver=deliver,
                submit=submit,
            )
        if baseline is not None:
            paths.append(
                Route(
                    "baseline",
                    Target(baseline.address, SUBMIT, submit),
                    [baseline.pid],
                    all_stub_pids,
                )
            )
        targets.extend(p.target for p in paths)
        for path in paths:  # warm up: connections, key and status-list caches
            await closed_loop(path.target, concurrency=8, seconds=options.warmup)
        return await interleave(options, paths, log)


async def _postgres(
    options: Options, stack: contextlib.AsyncExitStack, log: Callable[[str], None]
) -> database.Database | None:
    """The run's own database for the PostgreSQL paths (dropped when `stack` closes), or None
    when they are off or no server answers (said in the log)."""
    if options.postgres is None:
        return None
    reason = await database.unreachable(options.postgres)
    if reason is not None:
        log(f"PostgreSQL paths skipped: {reason}; {database.HINT}.")
        return None
    db = await stack.enter_async_context(database.fresh(options.postgres))
    log(f"PostgreSQL paths on database {db.name} (created for this run, dropped after it)")
    return db


async def _postgres_paths(
    db: database.Database,
    options: Options,
    *,
    store_proxy: list[str],
    stubs: dict[str, procs.Proc],
    root: Path,
    started: list[procs.Proc],
    deliver: Callable[[], bytes],
    submit: Callable[[], bytes],
) -> list[Route]:
    """Starts the floor and the gateway replicas on `db` (each added to `started`); their
    paths."""
    regions = {code: stub.address for code, stub in stubs.items()}
    env = db.environment(os.environ)
    floor = await procs.start("durable-pg", [*store_proxy, db.store_url("durable-pg")], env=env)
    started.append(floor)
    paths = [
        Route(
            "durable-pg",
            Target(floor.address, DELIVER, deliver),
            [floor.pid],
            [stubs[TARGET].pid],
            (db, "durable-pg"),
        )
    ]
    for n in options.replicas:
        replicas = []
        for i in range(n):  # one after another: the first migrates the schema
            gw = await procs.start(
                f"gateway-pg×{n} replica {i + 1}",
                gateway_command(
                    regions,
                    root / f"gateway-pg-{n}-{i + 1}",
                    options.standards_dir.resolve(),
                    1,
                    store=db.store_url(f"gateway-pg-{n}"),
                ),
                env=env,
            )
            started.append(gw)
            replicas.append(gw)
        paths.append(
            Route(
                "gateway-pg" if n == 1 else f"gateway-pg×{n}",
                Target([g.address for g in replicas], SUBMIT, submit),
                [g.pid for g in replicas],
                [s.pid for s in stubs.values()],
                (db, f"gateway-pg-{n}"),
            )
        )
    return paths


async def interleave(
    options: Options, paths: list[Route], log: Callable[[str], None]
) -> list[Result]:
    """Every scenario of `options` on every path, the paths taking turns segment by segment
    (each round starting one path later), so that background load falls on all alike."""
    results: list[Result] = []
    for scenario_name in options.scenarios:
        scenario = SCENARIOS[scenario_name]
        by_path = {p.name: Result(scenario.name, p.name) for p in paths}
        for round_ in range(options.rounds):
            shift = round_ % len(paths)
            for path in paths[shift:] + paths[:shift]:
                await _measure(scenario, path, options, by_path[path.name], os.getpid())
                await asyncio.sleep(0.2)  # let in-flight work and group commits settle
        results.extend(by_path.values())
        log(f"  {scenario.name}: done")
    return results


async def issue_licence(origin: str) -> str:
    async with grpc.aio.insecure_channel(origin) as channel:
        admin = admin_pb2_grpc.RegionAdminServiceStub(channel)
        issued = await admin.IssueLicense(
            admin_pb2.IssueLicenseRequest(
                license_type_code=ID_CARD,
                license_number="440305199003071239",
                holder_id_type=application_pb2.ID_TYPE_CITIZEN_ID,
                holder_id_number=CITIZEN,
                valid_days=3650,
            )
        )
    return str(issued.token)


async def submit_once(
    gateway: str, template: application_pb2.SubmitApplicationRequest
) -> application_pb2.Application:
    async with grpc.aio.insecure_channel(gateway) as channel:
        stub = application_pb2_grpc.ApplicationServiceStub(channel)
        response = await stub.SubmitApplication(template, timeout=30)
    app: application_pb2.Application = response.application
    if app.state != application_pb2.APPLICATION_STATE_DELIVERED:
        raise RuntimeError(
            f"the first submission was not delivered: "
            f"{application_pb2.ApplicationState.Name(app.state)} {app.state_reason}"
        )
    return app
