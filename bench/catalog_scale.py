"""The catalog at national scale: 5,000 national matters, 1,000,000 local mappings, 31 provinces.

Generates a synthetic catalog and implementation lists in all five local-code dialects (with
N:1, 1:N, retired, duplicate and dirty rows), then measures, in one run:

- publish+activate of the whole set through `CatalogRegistry` with a real `Store` in a temp dir,
  while a reader task on the same event loop keeps resolving (its longest stall is reported);
- restart: a new registry loading everything back from the store (reader stall likewise);
- resident memory per mapping, in a fresh process that loads the store (RSS delta / mappings),
  and the bytes the loaded indexes retain (their objects walked once each with `sys.getsizeof`);
- in-process resolve and translate latency (per call, `time.perf_counter_ns`, random sample),
  next to the timer's own cost and the collector runs during each loop;
- `ResolveLocalCode` RPC throughput against no-op RPCs on the same grpc.aio server (one returning
  the same bytes as a real answer, one an empty response), driven by a concurrent client in
  another process that takes the three in turns in short slices, plus the server's CPU time per
  call (read from /proc per slice) and the client's.

Figures are printed with the machine description; `--json PATH` also writes them as JSON.
Nothing here is asserted: the machine is shared and timings are noisy (see bench/CATALOG.md).

    python -m bench.catalog_scale            # the full 1M set (a few minutes)
    python -m bench.catalog_scale --quick    # 50k mappings, a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc

from bench import procs
from gateway.api.v1 import catalog_pb2, catalog_pb2_grpc
from gateway.app.error_status import ErrorInterceptor
from gateway.catalog import codes, convert, documents, resolution
from gateway.catalog.registry import CatalogRegistry, load_provinces
from gateway.catalog.service import CatalogServicer, add_catalog_servicer, pass_through
from gateway.errors import TongbanError
from gateway.storage.sqlite import SqliteStore

ROOT = str(Path(__file__).resolve().parents[1])
STANDARDS = Path(ROOT) / "standards"
NOOP_METHODS = {
    "noop": "/tongban.bench.v1.Noop/Resolve",
    "empty": "/tongban.bench.v1.Noop/Empty",
}
"""No-op RPCs with ResolveLocalCode's request and response types, served next to it: `noop`
returns a real answer's bytes, prebuilt, `empty` an empty response (what the first version of
this benchmark compared against). Both hand their bytes to the wire as ResolveLocalCode does,
with no serializer between."""
RPC_KINDS = ("noop", "resolve", "empty")
"""What `rpc` compares: the same-bytes no-op, ResolveLocalCode, the empty no-op."""

TARGETS = {
    "translate_over_lookup_p99": 2.5,
    "rpc_ratio": 0.85,
    "bytes_per_mapping": 300.0,
    "activate_seconds": 20.0,
}

# -- synthetic data ----------------------------------------------------------------------

TYPES = ("01", "05", "07", "10", "20")
HYPHEN_TYPE = {"01": "1A", "05": "1G", "07": "1F", "10": "1Z", "20": "20"}
LEGACY_LETTER = {"01": "A", "05": "G", "07": "F", "10": "Z", "20": "G"}
LETTER_TYPE = {"01": "XK", "05": "JF", "07": "QR", "10": "QT", "20": "GG"}
DEPARTMENTS = (
    "市场监督管理局",
    "公安局",
    "人力资源和社会保障局",
    "民政局",
    "自然资源局",
    "交通运输局",
    "卫生健康委员会",
    "教育局",
    "税务局",
    "医疗保障局",
    "住房和城乡建设局",
    "生态环境局",
    "农业农村局",
    "文化和旅游局",
    "商务局",
    "司法局",
    "退役军人事务局",
    "应急管理局",
    "林业局",
    "水利局",
)
VERBS = ("登记", "备案", "许可", "证明", "办理", "变更", "注销", "补领")
NAME_SUFFIXES = ("", "", "", "", "（承诺制）", "（告知承诺）")
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
ID_CARD_TYPE = "11100000000013127D001"
CITIES, COUNTIES_PER_CITY = 12, 6


@dataclass
class Synthetic:
    """A generated catalog and its implementation lists."""

    catalog: dict[str, Any]
    lists: dict[str, dict[str, Any]]
    """Province code → list JSON."""
    mappings: int
    live: list[tuple[str, str, str]] = field(default_factory=list)
    """(province, local code, national code) of rows that resolve (first rows, not retired)."""
    implements: dict[str, set[str]] = field(default_factory=dict)
    """Province → national codes it has live rows for."""


def matter_code(i: int) -> str:
    return f"00{TYPES[i % len(TYPES)]}{20000 + i // 2:05d}{i % 2:03d}"


def make_catalog(n_matters: int) -> dict[str, Any]:
    matters = []
    for i in range(n_matters):
        dept = DEPARTMENTS[i % len(DEPARTMENTS)]
        matters.append(
            {
                "code": matter_code(i),
                "name": f"合成事项{i:04d}{VERBS[i % len(VERBS)]}",
                "type": TYPES[i % len(TYPES)],
                "competent_department": "国家" + dept.removesuffix("局"),
                "cross_region_modes": ["FULLY_ONLINE"] if i % 3 else ["PROXY_RECEIVE"],
                "legal_time_limit": {"value": 20, "unit": "WORKING_DAYS"},
                "promised_time_limit": {"value": 5, "unit": "WORKING_DAYS"},
                "service_objects": ["NATURAL_PERSON"],
                "materials": [
                    {"id": "M01", "name": "申请表", "required": True},
                    {
                        "id": "M02",
                        "name": "居民身份证",
                        "required": True,
                        "license_type_code": ID_CARD_TYPE,
                    },
                ],
                "synthetic": ["name", "type", "materials"],
            }
        )
    return {
        "kind": documents.CATALOG_KIND,
        "version": "2025.1",
        "effective_time": "2025-01-01T00:00:00+08:00",
        "publisher": "bench",
        "license_types": {ID_CARD_TYPE: "居民身份证"},
        "provenance": "synthetic: generated by bench/catalog_scale.py",
        "matters": matters,
    }


@functools.cache
def _uscc(area: str, dept: int) -> str:
    rng = random.Random(f"{area}/{dept}")
    first17 = "11" + area + "MB" + "".join(rng.choice(USCC_ALPHABET) for _ in range(7))
    return first17 + codes.uscc_check_char(first17)


def _areas(province: str, name: str) -> list[tuple[str, str, str]]:
    """(6-digit area, level digit, area name): the province, its cities, their counties."""
    pp = province[:2]
    areas = [(province, "2", name)]
    for c in range(1, CITIES + 1):
        areas.append((f"{pp}{c:02d}00", "3", f"{name}第{c}市"))
        for d in range(2, COUNTIES_PER_CITY + 2):
            areas.append((f"{pp}{c:02d}{d:02d}", "4", f"{name}第{c}市第{d}区县"))
    return areas


def _rows_per_matter(rng: random.Random, n_matters: int, n_rows: int, cap: int) -> list[int]:
    """Skewed: most matters once (province level), some per city, a few in every county."""
    ks = []
    for _ in range(n_matters):
        r = rng.random()
        if r < 0.03:
            ks.append(0)  # not implemented here
        elif r < 0.5:
            ks.append(1)
        elif r < 0.85:
            ks.append(rng.randint(2, 6))
        else:
            ks.append(rng.randint(8, 40))
    scale = n_rows / max(1, sum(ks))
    ks = [min(cap, round(k * scale)) if k else 0 for k in ks]
    while (total := sum(ks)) != n_rows:
        i = rng.randrange(n_matters)
        if total < n_rows and 0 < ks[i] < cap:
            ks[i] += 1
        elif total > n_rows and ks[i] > 1:
            ks[i] -= 1
    return ks


def _local_code(
    dialect: str,
    *,
    area: str,
    level: str,
    dept: int,
    i: int,
    j: int,
    nn: str,
    uscc: str,
    basic: str,
) -> str:
    mtype = basic[2:4]
    if dialect == "NATIONAL":
        return uscc + level + basic + nn
    if dialect == "HYPHENATED":
        return f"{area[:2]}{HYPHEN_TYPE[mtype]}{i:07d}000-{area}000000-000-{uscc}-1-{nn or '00'}"
    if dialect == "LEGACY_POWER":
        return f"{LEGACY_LETTER[mtype]}-{i:06d}-{j:03d}"
    if dialect == "LETTER_TYPE":
        return f"{LETTER_TYPE[mtype]}{i:05d}{j:03d}"
    return f"{area}{dept:03d}{mtype}{i % 1000:03d}{i // 1000:02d}"  # POWER16


def make_list(
    province: str, name: str, dialect: str, *, n_matters: int, n_rows: int, seed: int
) -> dict[str, Any]:
    """One province's list of exactly `n_rows` rows."""
    rng = random.Random(f"{seed}/{province}")
    areas = _areas(province, name)
    ks = _rows_per_matter(rng, n_matters, n_rows, len(areas))
    entries: list[dict[str, Any]] = []
    for i, k in enumerate(ks):
        if not k:
            continue
        dept = i % len(DEPARTMENTS)
        basic = matter_code(i)
        matter_name = f"合成事项{i:04d}{VERBS[i % len(VERBS)]}"
        chosen = [areas[0], *rng.sample(areas[1:], k - 1)]
        handling = dialect in ("NATIONAL", "HYPHENATED") and k >= 2 and rng.random() < 0.3
        for j in range(k):
            area, level, area_name = chosen[j]
            nn = ""
            if handling and j < 2:
                area, level, area_name = chosen[0]  # two handling items of one implementation
                nn = f"{j + 1:02d}"
            uscc = _uscc(area, dept)
            nationals = [basic]
            if rng.random() < 0.004:  # a merged local item: 1:N
                nationals.append(matter_code(rng.randrange(n_matters)))
                if nationals[1] == basic:
                    nationals.pop()
                elif dialect == "NATIONAL":
                    basic_local = f"{province[:2]}{basic[2:4]}{i:05d}9{j:02d}"
                    nn, basic = "", basic_local  # embeds a province-origin basic code
            local = _local_code(
                dialect, area=area, level=level, dept=dept, i=i, j=j, nn=nn, uscc=uscc, basic=basic
            )
            basic = matter_code(i)
            r = rng.random()
            agency_code = uscc[:17] if r < 0.003 else uscc  # a few truncated (dirty) codes
            cancel = "2024-06-30" if r > 0.97 else ("2030-12-31" if r > 0.96 else None)
            entries.append(
                {
                    "local_code": local,
                    "national_codes": nationals,
                    "local_name": matter_name
                    + (f"（情形{nn}）" if nn else NAME_SUFFIXES[rng.randrange(6)]),
                    "agency_name": area_name + DEPARTMENTS[dept],
                    "agency_code": agency_code,
                    "cancel_date": cancel,
                }
            )
    for _ in range(max(1, n_rows // 2000)):  # exact repeats: the first row wins
        entries[rng.randrange(len(entries))] = dict(entries[rng.randrange(len(entries))])
    return {
        "kind": documents.REGION_CATALOG_KIND,
        "region_code": province,
        "region_name": name,
        "dialect": dialect,
        "catalog_version": "2025.1",
        "provenance": "synthetic: generated by bench/catalog_scale.py",
        "entries": entries,
    }


def generate(
    provinces: dict[str, str], n_matters: int, n_mappings: int, seed: int, today: str
) -> Synthetic:
    catalog = make_catalog(n_matters)
    codes_sorted = sorted(provinces)
    dialects = ("NATIONAL", "HYPHENATED", "LEGACY_POWER", "LETTER_TYPE", "POWER16")
    lists = {}
    base, extra = divmod(n_mappings, len(codes_sorted))
    for n, code in enumerate(codes_sorted):
        rows = base + (1 if n < extra else 0)
        lists[code] = make_list(
            code,
            provinces[code],
            dialects[n % len(dialects)],
            n_matters=n_matters,
            n_rows=rows,
            seed=seed,
        )
    synthetic = Synthetic(catalog, lists, n_mappings)
    for code, data in lists.items():
        seen: set[str] = set()
        live: set[str] = set()
        for e in data["entries"]:
            if e["local_code"] in seen:
                continue
            seen.add(e["local_code"])
            if e["cancel_date"] is None or e["cancel_date"] >= today:
                live.update(e["national_codes"])
                synthetic.live.append((code, e["local_code"], e["national_codes"][-1]))
        synthetic.implements[code] = live
    return synthetic


# -- measurement helpers -------------------------------------------------------------------


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def deep_size(root: object) -> int:
    """Bytes of every object reachable from `root` (types and functions excluded), each once."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def percentile(sorted_values: Sequence[int], q: float) -> float:
    if not sorted_values:
        return 0.0
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("tongban", "grpcio", "protobuf"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "?"
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "packages": versions,
        "loadavg_start": list(os.getloadavg()),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


class StallWatch:
    """A reader task on the event loop: resolves codes back to back, records its longest gap."""

    def __init__(self, registry: CatalogRegistry, sample: list[tuple[str, str, str]]) -> None:
        self.registry = registry
        self.sample = sample
        self.max_stall_ns = 0
        self.reads = 0
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        now = datetime.now(UTC)
        last = time.perf_counter_ns()
        n = 0
        while not self._stop:
            region, local, national = self.sample[n % len(self.sample)]
            n += 1
            with contextlib.suppress(TongbanError):  # not published yet
                resolution.resolve(
                    self.registry.snapshot, region, local, now=now, national_code=national
                )
            self.reads += 1
            await asyncio.sleep(0)
            t = time.perf_counter_ns()
            self.max_stall_ns = max(self.max_stall_ns, t - last)
            last = t


# -- phases ----------------------------------------------------------------------------------


async def publish_all(
    store_path: Path, provinces: dict[str, str], synthetic: Synthetic, reader_sample: list[Any]
) -> dict[str, Any]:
    parsed_catalog = documents.parse_catalog(synthetic.catalog, provinces).value
    assert parsed_catalog is not None
    t0 = time.perf_counter()
    region_docs = []
    for data in synthetic.lists.values():
        doc = documents.parse_region_catalog(data, provinces).value
        assert doc is not None
        region_docs.append(doc)
    parse_s = time.perf_counter() - t0
    # The parsed lists are the harness's input (a gateway holds one request at a time): keep the
    # collector from walking them while the registry works.
    gc.collect()
    gc.freeze()
    store = await SqliteStore.open(store_path)
    try:
        registry = CatalogRegistry(store, provinces, lambda: datetime.now(UTC))
        await registry.publish_version(parsed_catalog, synthetic.catalog, signed_document="")
        per_list: list[float] = []
        warnings = 0
        cpu0 = time.process_time()
        for doc in region_docs:  # alone: what activation costs
            t1 = time.perf_counter()
            warnings += len((await registry.publish_region(doc)).warnings)
            per_list.append(time.perf_counter() - t1)
        activate_s = sum(per_list)
        activate_cpu_s = time.process_time() - cpu0
        idle = StallWatch(registry, reader_sample)  # the machine's own noise, for comparison
        idle.start()
        await asyncio.sleep(3.0)
        await idle.stop()
        # Again, replacing every live list while a reader resolves codes from them.
        watch = StallWatch(registry, reader_sample)
        watch.start()
        await asyncio.sleep(0.05)
        t1 = time.perf_counter()
        for doc in region_docs:
            await registry.publish_region(doc)
        reactivate_s = time.perf_counter() - t1
        await asyncio.sleep(0.05)
        await watch.stop()
        del doc, region_docs
        largest = max(registry.snapshot.region_indexes().values(), key=len)
        message_bytes = convert.region_catalog(largest).ByteSize()
    finally:
        await store.close()
    return {
        "largest_list_rows": len(largest),
        "largest_list_message_bytes": message_bytes,
        "parse_seconds": parse_s,
        "publish_activate_seconds": activate_s,
        "publish_activate_cpu_seconds": activate_cpu_s,
        "republish_with_reader_seconds": reactivate_s,
        "slowest_list_seconds": max(per_list),
        "warnings": warnings,
        "reader_max_stall_ms": watch.max_stall_ns / 1e6,
        "reader_reads": watch.reads,
        "idle_reader_max_stall_ms": idle.max_stall_ns / 1e6,
        "store_bytes": sum(p.stat().st_size for p in store_path.parent.glob(store_path.name + "*")),
    }


async def restart(
    store_path: Path, provinces: dict[str, str], reader_sample: list[Any]
) -> tuple[dict[str, Any], CatalogRegistry, SqliteStore]:
    store = await SqliteStore.open(store_path)
    alone = CatalogRegistry(store, provinces, lambda: datetime.now(UTC))
    t0 = time.perf_counter()
    await alone.load()  # as the gateway starts: nobody is reading yet
    alone_s = time.perf_counter() - t0
    del alone
    registry = CatalogRegistry(store, provinces, lambda: datetime.now(UTC))
    watch = StallWatch(registry, reader_sample)
    watch.start()
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    await registry.load()
    load_s = time.perf_counter() - t0
    await asyncio.sleep(0.05)
    await watch.stop()
    return (
        {
            "load_seconds": alone_s,
            "load_with_reader_seconds": load_s,
            "reader_max_stall_ms": watch.max_stall_ns / 1e6,
            "reader_reads": watch.reads,
        },
        registry,
        store,
    )


def _summary(values: list[int]) -> dict[str, float]:
    values.sort()
    return {
        "per_second": len(values) / (sum(values) / 1e9),
        "p50_us": percentile(values, 0.50) / 1e3,
        "p90_us": percentile(values, 0.90) / 1e3,
        "p99_us": percentile(values, 0.99) / 1e3,
        "max_us": values[-1] / 1e3,
    }


def _rotated(kinds: Sequence[str], turn: int) -> list[str]:
    """`kinds` starting at position `turn` (wrapping): the order of round or slice `turn`."""
    shift = turn % len(kinds)
    return [*kinds[shift:], *kinds[:shift]]


def _time_calls(
    name: str,
    pairs: list[tuple[str, str, str, str]],
    tables: list[tuple[dict[str, int], str]],
    *,
    snapshot: resolution.CatalogSnapshot,
    now: datetime,
    ns: list[int],
) -> None:
    """One round of kind `name` over `pairs` (their tables and local codes for "lookup"): each
    call's nanoseconds into `ns`."""
    clock = time.perf_counter_ns
    resolve, targets, translate = resolution.resolve, resolution.targets, resolution.translate
    if name == "timer":
        for i in range(len(pairs)):
            t = clock()
            ns[i] = clock() - t
    elif name == "lookup":
        for i, (table, local) in enumerate(tables):
            t = clock()
            table.get(local)
            ns[i] = clock() - t
    elif name == "resolve":
        for i, (region, local, national, _) in enumerate(pairs):
            t = clock()
            resolve(snapshot, region, local, now=now, national_code=national)
            ns[i] = clock() - t
    elif name == "resolve+targets":
        for i, (region, local, national, to) in enumerate(pairs):
            t = clock()
            source = resolve(snapshot, region, local, now=now, national_code=national)
            targets(snapshot, source, to, now=now)[0].local_code  # noqa: B018
            ns[i] = clock() - t
    else:
        for i, (region, local, national, to) in enumerate(pairs):
            t = clock()
            translate(snapshot, region, local, to, now=now, national_code=national)
            ns[i] = clock() - t


def in_process(
    registry: CatalogRegistry, synthetic: Synthetic, samples: int, seed: int, rounds: int
) -> dict[str, Any]:
    """Per-call latency of resolve and translate, each call timed on its own.

    Each loop times every call with two `perf_counter_ns` readings; "timer" is the same loop
    around nothing, so its percentiles are what the method itself adds; "lookup" times only the
    first step of every translation, one `dict.get` of the local code in its province's table
    of the real index, so its tail is what this machine's caches and neighbours give any lookup
    in a table this size. The collector stays on
    (a gateway runs with it), and the collections that ran during each loop are counted.
    Every kind runs `rounds` times, the kinds taking turns in a rotating order; a kind's figures
    are those of its median round by p99, so that one round disturbed by another process on
    this shared machine does not decide the tail. Every round's p99 is reported beside them.
    """
    rng = random.Random(seed)
    snapshot = registry.snapshot
    now = datetime.now(UTC)
    provinces = sorted(synthetic.implements)
    picks = [synthetic.live[rng.randrange(len(synthetic.live))] for _ in range(samples)]
    pairs = []
    for region, local, national in picks:
        to = rng.choice(provinces)
        while to == region or national not in synthetic.implements[to]:
            to = rng.choice(provinces)
        pairs.append((region, local, national, to))
    regions = snapshot.regions or {}
    tables = [(regions[region]._first, local) for region, local, _, _ in pairs]
    collections = [0, 0, 0]

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections[info["generation"]] += 1

    kinds = ["timer", "lookup", "resolve", "resolve+targets", "translate"]
    out: dict[str, Any] = {"samples": samples, "rounds": rounds, "gc_collections": {}}
    by_round: dict[str, list[dict[str, float]]] = {name: [] for name in kinds}
    gc.callbacks.append(count)
    try:
        for name in (k for r in range(rounds) for k in _rotated(kinds, r)):
            ns = [0] * len(pairs)  # preallocated: no list growth inside the timed loop
            collections[:] = [0, 0, 0]
            _time_calls(name, pairs, tables, snapshot=snapshot, now=now, ns=ns)
            by_round[name].append(_summary(ns))
            totals = out["gc_collections"].setdefault(name, [0, 0, 0])
            out["gc_collections"][name] = [a + b for a, b in zip(totals, collections, strict=True)]
    finally:
        gc.callbacks.remove(count)
    for name, summaries in by_round.items():
        ordered = sorted(summaries, key=lambda r: r["p99_us"])
        out[name] = {
            **ordered[(len(ordered) - 1) // 2],
            "round_p99_us": [r["p99_us"] for r in summaries],
        }
    return out


def _noop_handler(
    response: bytes,
) -> Callable[[catalog_pb2.ResolveLocalCodeRequest, grpc.aio.ServicerContext], Awaitable[bytes]]:
    async def noop(
        request: catalog_pb2.ResolveLocalCodeRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        return response

    return noop


async def rpc(
    registry: CatalogRegistry,
    synthetic: Synthetic,
    *,
    seconds: float,
    slices: int,
    concurrency: int,
    seed: int,
    rounds: int,
) -> dict[str, Any]:
    """`ResolveLocalCode` against the no-ops on one server, interleaved in short slices.

    Each round is a client process that keeps `concurrency` calls in flight and takes the three
    kinds in turns, `slices` times, `seconds` each, the order rotating from slice to slice; it
    reads this server's CPU time from /proc around every slice. Load that comes and goes on the
    machine (seconds long, here) so falls on every kind alike within a round. The verdict is the
    median of the rounds' ratios; the pooled throughput and the server's CPU ratio are beside it.
    """
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    servicer = CatalogServicer(registry, {}, lambda: datetime.now(UTC))
    add_catalog_servicer(servicer, server)
    rng = random.Random(seed)
    sample = [synthetic.live[rng.randrange(len(synthetic.live))] for _ in range(2000)]
    requests = [
        catalog_pb2.ResolveLocalCodeRequest(region_code=r, local_code=c, national_code=n)
        for r, c, n in sample
    ]
    prebuilt = await servicer.ResolveLocalCode(requests[0], None)
    handlers = {"noop": _noop_handler(prebuilt), "empty": _noop_handler(b"")}
    for kind, path in NOOP_METHODS.items():
        service, method = path.strip("/").split("/")
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    service,
                    {
                        method: grpc.unary_unary_rpc_method_handler(
                            handlers[kind],
                            request_deserializer=catalog_pb2.ResolveLocalCodeRequest.FromString,
                            response_serializer=pass_through,  # as ResolveLocalCode's own
                        )
                    },
                ),
            )
        )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in RPC_KINDS}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(sample, f)
    try:
        for _ in range(rounds):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.catalog_scale",
                "--client",
                f"127.0.0.1:{port}",
                "--client-codes",
                f.name,
                "--client-seconds",
                str(seconds),
                "--client-slices",
                str(slices),
                "--client-concurrency",
                str(concurrency),
                "--client-server-pid",
                str(os.getpid()),
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            out, _ = await proc.communicate()
            for kind, figures in json.loads(out).items():
                results[kind].append(figures)
    finally:
        os.unlink(f.name)
        await server.stop(0)
    summary: dict[str, Any] = {
        "seconds_per_slice": seconds,
        "slices": slices,
        "rounds": rounds,
        "concurrency": concurrency,
        "response_bytes": len(prebuilt),
    }
    # The handlers alone, in this process: what the lookup adds to a call, with little noise.
    for name, handler in (("noop", handlers["noop"]), ("resolve", servicer.ResolveLocalCode)):
        batches = []
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for request in requests:
                await handler(request, None)
            batches.append((time.perf_counter_ns() - t0) / len(requests) / 1e3)
        summary[f"{name}_handler_us"] = min(batches)
    for kind, rs in results.items():
        calls = sum(r["calls"] for r in rs)
        summary[kind] = {
            "per_second": calls / sum(r["seconds"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
            "server_cpu_us_per_call": 1e6 * sum(r["server_cpu_seconds"] for r in rs) / calls,
            "client_cpu_us_per_call": 1e6 * sum(r["client_cpu_seconds"] for r in rs) / calls,
        }

    def per_round(kind: str, base: str) -> list[float]:
        return [
            (r["calls"] / r["seconds"]) / (b["calls"] / b["seconds"])
            for b, r in zip(results[base], results[kind], strict=True)
        ]

    summary["round_ratios"] = per_round("resolve", "noop")
    summary["ratio"] = statistics.median(summary["round_ratios"])
    summary["pooled_ratio"] = summary["resolve"]["per_second"] / summary["noop"]["per_second"]
    summary["empty_round_ratios"] = per_round("resolve", "empty")
    summary["empty_ratio"] = statistics.median(summary["empty_round_ratios"])
    summary["noop_vs_empty_ratio"] = statistics.median(per_round("noop", "empty"))
    summary["cpu_ratio"] = (
        summary["noop"]["server_cpu_us_per_call"] / summary["resolve"]["server_cpu_us_per_call"]
    )
    extra = summary["resolve_handler_us"] - summary["noop_handler_us"]
    noop_cpu = summary["noop"]["server_cpu_us_per_call"]
    summary["derived_ratio"] = noop_cpu / (noop_cpu + extra)
    return summary


async def _turn(
    call: Callable[[Any], Awaitable[Any]], requests: list[Any], seconds: float, n: int, first: int
) -> tuple[int, int]:
    """`n` callers back to back for `seconds`: (calls answered, calls failed)."""
    deadline = time.perf_counter() + seconds
    counts = [0, 0]

    async def worker(i: int) -> None:
        while time.perf_counter() < deadline:
            try:
                await call(requests[i % len(requests)])
                counts[0] += 1
            except grpc.aio.AioRpcError:
                counts[1] += 1
            i += n

    await asyncio.gather(*(worker(first + i) for i in range(n)))
    return counts[0], counts[1]


async def client(
    address: str, *, codes_file: str, seconds: float, slices: int, n: int, server_pid: int
) -> None:
    """One round of `rpc`: prints each kind's calls, errors, seconds and CPU as JSON."""
    with open(codes_file, encoding="utf-8") as f:  # noqa: ASYNC230 - before any RPC
        sample = json.load(f)
    requests = [
        catalog_pb2.ResolveLocalCodeRequest(region_code=r, local_code=c, national_code=nc)
        for r, c, nc in sample
    ]
    totals: dict[str, dict[str, float]] = {
        kind: {
            "calls": 0,
            "errors": 0,
            "seconds": 0.0,
            "server_cpu_seconds": 0.0,
            "client_cpu_seconds": 0.0,
        }
        for kind in RPC_KINDS
    }
    async with grpc.aio.insecure_channel(address) as channel:
        calls = {
            kind: channel.unary_unary(
                NOOP_METHODS[kind],
                request_serializer=catalog_pb2.ResolveLocalCodeRequest.SerializeToString,
                response_deserializer=catalog_pb2.ResolveLocalCodeResponse.FromString,
            )
            for kind in NOOP_METHODS
        }
        calls["resolve"] = catalog_pb2_grpc.CatalogServiceStub(channel).ResolveLocalCode
        for call in calls.values():
            await call(requests[0])  # connected and warm before any clock starts
        for k in range(slices):
            for kind in _rotated(RPC_KINDS, k):
                server0 = procs.cpu_seconds(server_pid, tree=False)
                cpu0 = time.process_time()
                start = time.perf_counter()
                answered, failed = await _turn(calls[kind], requests, seconds, n, k * n)
                row = totals[kind]
                row["seconds"] += time.perf_counter() - start
                row["client_cpu_seconds"] += time.process_time() - cpu0
                row["server_cpu_seconds"] += procs.cpu_seconds(server_pid, tree=False) - server0
                row["calls"] += answered
                row["errors"] += failed
    print(json.dumps(totals))


async def memory_probe(store_path: Path) -> None:
    """Run in a fresh process: what loading the stored catalog adds to RSS, and retains."""
    provinces = load_provinces(STANDARDS)
    store = await SqliteStore.open(store_path)
    try:
        registry = CatalogRegistry(store, provinces, lambda: datetime.now(UTC))
        gc.collect()
        before = rss_bytes()
        await registry.load()
        gc.collect()
        after = rss_bytes()
        regions = registry.snapshot.region_indexes()
        mappings = sum(len(ix.document.entries) for ix in regions.values())
        retained = deep_size(regions)
    finally:
        await store.close()
    print(json.dumps({"rss_delta": after - before, "mappings": mappings, "retained": retained}))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine(), "targets": TARGETS}
    provinces = load_provinces(STANDARDS)
    t0 = time.perf_counter()
    today = datetime.now(UTC).date().isoformat()
    synthetic = generate(provinces, args.matters, args.mappings, args.seed, today)
    report["data"] = {
        "national_matters": args.matters,
        "mappings": synthetic.mappings,
        "provinces": len(synthetic.lists),
        "generate_seconds": time.perf_counter() - t0,
        "one_to_many_rows": sum(
            len(e["national_codes"]) > 1 for d in synthetic.lists.values() for e in d["entries"]
        ),
        "retired_rows": sum(
            e["cancel_date"] is not None and e["cancel_date"] < today
            for d in synthetic.lists.values()
            for e in d["entries"]
        ),
        "dialects": sorted({d["dialect"] for d in synthetic.lists.values()}),
    }
    # The generated JSON is the harness's, not the gateway's: keep the collector from walking it
    # again and again (a gateway process never holds a million rows of JSON objects).
    gc.collect()
    gc.freeze()
    rng = random.Random(args.seed)
    reader_sample = [synthetic.live[rng.randrange(len(synthetic.live))] for _ in range(1000)]
    with tempfile.TemporaryDirectory(prefix="tongban-bench-") as tmp:
        store_path = Path(tmp) / "store.db"
        report["activate"] = await publish_all(store_path, provinces, synthetic, reader_sample)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.catalog_scale",
            "--memory-probe",
            str(store_path),
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        out, _ = await proc.communicate()
        probe = json.loads(out)
        report["memory"] = {
            "method": "fresh process loading the store: RSS delta after gc / mappings; "
            "retained = the indexes' objects walked once each with sys.getsizeof",
            "rss_bytes_per_mapping": probe["rss_delta"] / probe["mappings"],
            "retained_bytes_per_mapping": probe["retained"] / probe["mappings"],
        }
        restarted, registry, store = await restart(store_path, provinces, reader_sample)
        report["restart"] = restarted
        try:
            report["in_process"] = in_process(
                registry, synthetic, args.samples, args.seed, args.rounds
            )
            report["rpc"] = await rpc(
                registry,
                synthetic,
                seconds=args.rpc_seconds,
                slices=args.rpc_slices,
                concurrency=args.concurrency,
                seed=args.seed,
                rounds=args.rpc_rounds,
            )
        finally:
            await store.close()
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    report["verdict"] = {
        "translate_over_lookup_p99": report["in_process"]["translate"]["p99_us"]
        / report["in_process"]["lookup"]["p99_us"]
        <= TARGETS["translate_over_lookup_p99"],
        "rpc_ratio": report["rpc"]["ratio"] >= TARGETS["rpc_ratio"],
        "bytes_per_mapping": report["memory"]["rss_bytes_per_mapping"]
        < TARGETS["bytes_per_mapping"],
        "activate_seconds": report["activate"]["publish_activate_seconds"]
        < TARGETS["activate_seconds"],
    }
    return report


def render(report: dict[str, Any]) -> str:
    m, d, a, r = report["machine"], report["data"], report["activate"], report["restart"]
    mem, ip, rp, ok = report["memory"], report["in_process"], report["rpc"], report["verdict"]

    def mark(key: str) -> str:
        return "ok  " if ok[key] else "MISS"

    lines = [
        f"machine: {m['nproc']} cpu ({m['cpu_model']}), Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + f"; load {m['loadavg_start'][0]:.2f} → {m['loadavg_end'][0]:.2f}; {m['date']}",
        f"data: {d['national_matters']} national matters, {d['mappings']} mappings over "
        f"{d['provinces']} provinces ({', '.join(d['dialects'])}); {d['one_to_many_rows']} 1:N, "
        f"{d['retired_rows']} retired; generated in {d['generate_seconds']:.1f} s",
        f"[{mark('activate_seconds')}] publish+activate {a['publish_activate_seconds']:.2f} s "
        f"(CPU {a['publish_activate_cpu_seconds']:.2f} s) "
        f"(target < {TARGETS['activate_seconds']:.0f} s; slowest list "
        f"{a['slowest_list_seconds']:.2f} s; parse {a['parse_seconds']:.2f} s; "
        f"{a['warnings']} warnings); republished with a reader in "
        f"{a['republish_with_reader_seconds']:.2f} s, its max stall "
        f"{a['reader_max_stall_ms']:.1f} ms "
        f"over {a['reader_reads']} reads (idle, 3 s: {a['idle_reader_max_stall_ms']:.1f} ms); "
        f"store {a['store_bytes'] / 1e6:.0f} MB; largest list "
        f"{a['largest_list_rows']} rows = {a['largest_list_message_bytes'] / 2**20:.1f} MiB "
        "as a RegionCatalog message",
        f"       restart load {r['load_seconds']:.2f} s; again with a reader "
        f"{r['load_with_reader_seconds']:.2f} s, its max stall "
        f"{r['reader_max_stall_ms']:.1f} ms over {r['reader_reads']} reads",
        f"[{mark('bytes_per_mapping')}] memory {mem['rss_bytes_per_mapping']:.0f} B/mapping RSS "
        f"(target < {TARGETS['bytes_per_mapping']:.0f}); retained "
        f"{mem['retained_bytes_per_mapping']:.0f} B/mapping",
        *(
            f"{'[' + mark('translate_over_lookup_p99') + ']' if name == 'translate' else '      '} "
            f"{name:<15} {ip[name]['per_second']:>10,.0f}/s  p50 {ip[name]['p50_us']:.2f} µs  "
            f"p90 {ip[name]['p90_us']:.2f} µs  p99 {ip[name]['p99_us']:.2f} µs  "
            f"max {ip[name]['max_us']:.0f} µs; gc runs (gen 0/1/2) "
            + "/".join(str(n) for n in ip["gc_collections"][name])
            + "; p99 per round "
            + ", ".join(f"{x:.2f}" for x in ip[name]["round_p99_us"])
            + (
                f" = {ip['translate']['p99_us'] / ip['lookup']['p99_us']:.2f}× its first step "
                f"alone, the lookup (p99 {ip['lookup']['p99_us']:.2f} µs; target ≤ "
                f"{TARGETS['translate_over_lookup_p99']:.1f}×; median of {ip['rounds']} "
                f"rounds of {ip['samples']} calls)"
                if name == "translate"
                else ""
            )
            for name in ("timer", "lookup", "resolve", "resolve+targets", "translate")
        ),
        f"[{mark('rpc_ratio')}] RPC ResolveLocalCode vs no-op (same response bytes): median of "
        f"{rp['rounds']} rounds {rp['ratio']:.1%} (target ≥ {TARGETS['rpc_ratio']:.0%}; each round "
        f"{rp['slices']} turns of {rp['seconds_per_slice']:g} s per kind); per round "
        + ", ".join(f"{x:.0%}" for x in rp["round_ratios"])
        + f"; pooled {rp['resolve']['per_second']:,.0f}/s vs {rp['noop']['per_second']:,.0f}/s "
        f"= {rp['pooled_ratio']:.1%}; concurrency {rp['concurrency']}, errors "
        f"{rp['resolve']['errors']}",
        f"       server CPU/call {rp['resolve']['server_cpu_us_per_call']:.0f} vs "
        f"{rp['noop']['server_cpu_us_per_call']:.0f} µs = {rp['cpu_ratio']:.1%}; client CPU/call "
        f"{rp['resolve']['client_cpu_us_per_call']:.0f} vs "
        f"{rp['noop']['client_cpu_us_per_call']:.0f} µs; response {rp['response_bytes']} B",
        f"       vs an empty no-op ({rp['empty']['per_second']:,.0f}/s, server CPU/call "
        f"{rp['empty']['server_cpu_us_per_call']:.0f} µs): median {rp['empty_ratio']:.1%}; the "
        f"same-bytes no-op vs the empty one: {rp['noop_vs_empty_ratio']:.1%}",
        f"       handlers in-process: resolve {rp['resolve_handler_us']:.1f} µs, no-op "
        f"{rp['noop_handler_us']:.1f} µs → no-op CPU / (no-op CPU + difference) = "
        f"{rp['derived_ratio']:.1%}",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.catalog_scale", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50k mappings, a few seconds")
    parser.add_argument("--matters", type=int, default=None, help="national matters (5000)")
    parser.add_argument("--mappings", type=int, default=None, help="local mappings (1000000)")
    parser.add_argument("--samples", type=int, default=None, help="in-process calls timed")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of each in-process kind")
    parser.add_argument("--rpc-seconds", type=float, default=None, help="per RPC slice")
    parser.add_argument("--rpc-slices", type=int, default=None, help="slices of each kind a round")
    parser.add_argument(
        "--rpc-rounds", type=int, default=None, help="RPC rounds (client processes)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="RPCs in flight")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--memory-probe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--client-codes", help=argparse.SUPPRESS)
    parser.add_argument("--client-seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--client-concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-slices", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.matters = args.matters or (1000 if quick else 5000)
    args.mappings = args.mappings or (50_000 if quick else 1_000_000)
    args.samples = args.samples or (5000 if quick else 200_000)
    args.rounds = args.rounds or (2 if quick else 5)
    args.rpc_seconds = args.rpc_seconds or (0.1 if quick else 0.5)
    args.rpc_slices = args.rpc_slices or (2 if quick else 12)
    args.rpc_rounds = args.rpc_rounds or 3
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark (or one of its helper processes); returns the exit status."""
    args = parse_args(argv)
    if args.memory_probe:
        asyncio.run(memory_probe(args.memory_probe))
        return 0
    if args.client:
        asyncio.run(
            client(
                args.client,
                codes_file=args.client_codes,
                seconds=args.client_seconds,
                slices=args.client_slices,
                n=args.client_concurrency,
                server_pid=args.client_server_pid,
            )
        )
        return 0
    report = asyncio.run(run(args))
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
