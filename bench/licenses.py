"""E-licence verification speed, measured against the two baselines the issue names.

    python -m bench.licenses [--quick] [--json FILE] [--profile] [--breakdown]

1. In process: the gateway's complete verification (`LicenseVerifier.verify`: pre-parse checks,
   trust list, key lookup, signature, claims, times, identifier check, holder, status list;
   warm key and status-list caches) against bare `jwt.decode` of the same tokens with a
   preloaded key. Target: verify() reaches at least 80% of bare decode's throughput, i.e. a
   first-seen licence costs at most 1.25× a bare decode (`first_sight_cost`). Measured
   twice: `first_sight` with the authenticated-token cache off (every token pays its
   signature check, as a token seen for the first time does) and `repeat` with it on (the
   same tokens again: a platform's pre-check, then the submission, then replays).
2. Over gRPC: `VerifyLicense` on a grpc.aio server built like the gateway's (same interceptor)
   against a no-op RPC on a server of the same kind taking the same request. A client process
   drives the servers in alternating rounds, cycling through a fixed set of tokens; the server
   process records its own CPU time per call. Target: VerifyLicense reaches at least 75% of
   the no-op's throughput. Measured with the token cache off and on.

Rounds alternate (A B A B …) in one run so that load from anything else on the machine hits
both sides alike, and in-process rounds are timed in this thread's CPU time rather than wall
time: read the ratios; absolute figures move with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import inspect
import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt

from gateway.api.v1 import license_pb2, license_pb2_grpc
from gateway.app.error_status import ErrorInterceptor
from gateway.licenses.keys import KeyCache
from gateway.licenses.service import LicenseServicer
from gateway.licenses.status_list import StatusListCache
from gateway.licenses.token import LICENSE_TOKEN_TYPE, read_unverified, verify_signature
from gateway.licenses.trust import TrustList
from gateway.licenses.verifier import LicenseVerifier, Verdict

try:
    from gateway.licenses.verifier import DEFAULT_TOKEN_CACHE_SIZE
except ImportError:  # measuring a revision from before the cache
    DEFAULT_TOKEN_CACHE_SIZE = 0
from region_stubs.issuer import LicenseIssuer

__all__ = ["main"]

TYPE_CODE = "11100000000013127D001"  # 居民身份证
HOLDER = "110105199003071239"
AGENCY = "11330105002500287C"
REGIONS = {"330000": "EdDSA", "370000": "ES256"}
_ROOT = Path(__file__).resolve().parent.parent
"""Where `bench` is importable from: the client process runs there."""


@dataclass(frozen=True)
class Settings:
    tokens_per_algorithm: int
    rounds: int
    rpc_rounds: int
    rpc_seconds: float
    concurrency: int


FULL = Settings(tokens_per_algorithm=200, rounds=9, rpc_rounds=3, rpc_seconds=3.0, concurrency=32)
QUICK = Settings(tokens_per_algorithm=20, rounds=2, rpc_rounds=1, rpc_seconds=0.3, concurrency=8)


# -- The world: two provinces issuing, a verifier with warm caches ----------------------------


@dataclass
class World:
    issuers: dict[str, LicenseIssuer]
    trust: TrustList
    keys: KeyCache
    status_lists: StatusListCache
    verifier: LicenseVerifier
    """Token cache off: every call pays the full path."""
    tokens: dict[str, list[str]]
    """Algorithm → tokens."""

    def another_verifier(self, token_cache_size: int) -> LicenseVerifier:
        """A verifier sharing this world's key and status-list caches."""
        return _verifier(self.trust, self.keys, self.status_lists, token_cache_size)


def build_world(tokens_per_algorithm: int, token_cache_size: int = 0) -> World:
    issuers = {code: LicenseIssuer(code, algorithm=alg) for code, alg in REGIONS.items()}
    trust = TrustList.from_mapping(
        {"issuers": {code: {"license_types": [TYPE_CODE]} for code in REGIONS}}
    )

    async def fetch_keys(region: str) -> tuple[str, int]:
        return issuers[region].jwks(), 300

    async def fetch_list(region: str) -> tuple[str, int]:
        return issuers[region].status_list_token(300), 300

    keys = KeyCache(fetch_keys, time.time, settings=trust.keys)
    status_lists = StatusListCache(fetch_list, keys, trust, time.time)
    verifier = _verifier(trust, keys, status_lists, token_cache_size)
    tokens: dict[str, list[str]] = {}
    for code, alg in REGIONS.items():
        tokens[alg] = [
            issuers[code]
            .issue(
                TYPE_CODE,
                f"N{i:06d}",
                holder_id_type="111",
                holder_id_number=HOLDER,
                issuing_agency_code=AGENCY,
            )
            .token
            for i in range(tokens_per_algorithm)
        ]
    return World(issuers, trust, keys, status_lists, verifier, tokens)


def _verifier(
    trust: TrustList, keys: KeyCache, status_lists: StatusListCache, token_cache_size: int
) -> LicenseVerifier:
    if "token_cache_size" not in inspect.signature(LicenseVerifier).parameters:
        return LicenseVerifier(trust, keys, status_lists, time.time)  # before the cache existed
    return LicenseVerifier(trust, keys, status_lists, time.time, token_cache_size=token_cache_size)


def _bare_keys(world: World) -> dict[str, Any]:
    """Algorithm → the preloaded public key bare pyjwt gets."""
    result = {}
    for code, alg in REGIONS.items():
        jwks = json.loads(world.issuers[code].jwks())["keys"]
        result[alg] = jwt.PyJWK.from_dict(jwks[-1]).key
    return result


async def _verify_all(verifier: LicenseVerifier, tokens: Sequence[str]) -> None:
    for token in tokens:
        verification = await verifier.verify(
            token, expected_type_code=TYPE_CODE, expected_holder_id=HOLDER
        )
        if verification.verdict is not Verdict.VALID:
            raise AssertionError(f"not VALID: {verification.verdict} {verification.detail}")


def _decode_all(tokens: Sequence[str], key: Any, alg: str) -> None:
    for token in tokens:
        jwt.decode(token, key=key, algorithms=[alg], audience="tongban-gateway")


def _cpu() -> float:
    """This thread's CPU seconds: unlike the wall clock, not stretched by other processes'
    load (the machine is shared), though caches and frequency still move it."""
    return time.thread_time()


def _ratio(ours: list[float], baseline: list[float]) -> float:
    """The median of per-round ratios: each round's pair ran back to back."""
    return round(statistics.median(o / b for o, b in zip(ours, baseline, strict=True)), 3)


def _us(rates: list[float]) -> float:
    return round(1e6 / statistics.median(rates), 1)


async def _breakdown(
    world: World, alg: str, tokens: Sequence[str], bare_key: Any, settings: Settings
) -> dict[str, float]:
    """Where first sight's time goes, each part in its own tight loop (µs per token; tight
    loops run warmer than the whole path, so the parts add up to less than the whole):
    the profile's pre-checks, pyjwt's JWS check with the prepared key, and inside it pyjwt's
    parse (`get_unverified_header` runs the same base64 and JSON work) and the signature
    primitive alone."""
    read = [read_unverified(t, expected_type=LICENSE_TOKEN_TYPE) for t in tokens]
    region = next(code for code, a in REGIONS.items() if a == alg)
    key = await world.keys.get(region, read[0].header.kid)
    assert key is not None
    prepared = key.jwk
    signed = [t.rpartition(".") for t in tokens]
    messages = [(head.encode(), jwt.utils.base64url_decode(sig)) for head, _, sig in signed]

    def pre_checks() -> None:
        for token in tokens:
            read_unverified(token, expected_type=LICENSE_TOKEN_TYPE)

    def pyjwt_jws() -> None:
        for unverified in read:
            verify_signature(unverified, prepared, audience=world.trust.audience, require=())

    def pyjwt_parse() -> None:
        for token in tokens:
            jwt.get_unverified_header(token)

    def signature() -> None:
        for message, raw in messages:
            prepared.Algorithm.verify(message, prepared.key, raw)

    parts: dict[str, Callable[[], None]] = {
        "bare_decode": lambda: _decode_all(tokens, bare_key, alg),
        "pre_checks": pre_checks,
        "pyjwt_jws": pyjwt_jws,
        "pyjwt_parse": pyjwt_parse,
        "signature": signature,
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(settings.rounds):
        for name, run in parts.items():
            start = _cpu()
            run()
            times[name].append((_cpu() - start) / len(tokens))
    return {f"{name}_us": round(statistics.median(t) * 1e6, 1) for name, t in times.items()}


async def bench_in_process(
    settings: Settings, profile: bool, breakdown: bool = False
) -> dict[str, Any]:
    world = build_world(settings.tokens_per_algorithm)
    repeat = world.another_verifier(DEFAULT_TOKEN_CACHE_SIZE)
    keys = _bare_keys(world)
    results: dict[str, Any] = {}
    for alg, tokens in world.tokens.items():
        await _verify_all(world.verifier, tokens)  # warm: keys, status list
        await _verify_all(repeat, tokens)  # warm: the token cache
        _decode_all(tokens, keys[alg], alg)
        bare: list[float] = []
        first: list[float] = []
        again: list[float] = []
        for _ in range(settings.rounds):
            start = _cpu()
            _decode_all(tokens, keys[alg], alg)
            bare.append(len(tokens) / (_cpu() - start))
            start = _cpu()
            await _verify_all(world.verifier, tokens)
            first.append(len(tokens) / (_cpu() - start))
            start = _cpu()
            await _verify_all(repeat, tokens)
            again.append(len(tokens) / (_cpu() - start))
        results[alg] = {
            "bare_decode_per_s": round(statistics.median(bare)),
            "bare_decode_us": round(1e6 / statistics.median(bare), 1),
            "first_sight_per_s": round(statistics.median(first)),
            "first_sight_us": round(1e6 / statistics.median(first), 1),
            "first_sight_ratio": _ratio(first, bare),
            "first_sight_cost": _ratio(bare, first),
            "repeat_per_s": round(statistics.median(again)),
            "repeat_us": round(1e6 / statistics.median(again), 1),
            "repeat_ratio": _ratio(again, bare),
            "target": 0.8,
        }
        if breakdown:
            results[alg]["breakdown"] = await _breakdown(world, alg, tokens, keys[alg], settings)
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(5):
            for tokens in world.tokens.values():
                await _verify_all(world.verifier, tokens)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        results["profile"] = out.getvalue()
    return results


# -- Over gRPC ----------------------------------------------------------------------------------


class _NoopLicenseServicer(license_pb2_grpc.LicenseServiceServicer):
    """The baseline: the same request, an empty answer."""

    async def VerifyLicense(
        self, request: license_pb2.VerifyLicenseRequest, context: Any
    ) -> license_pb2.VerifyLicenseResponse:
        return license_pb2.VerifyLicenseResponse()


async def _serve(servicer: license_pb2_grpc.LicenseServiceServicer) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    license_pb2_grpc.add_LicenseServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def bench_rpc(settings: Settings) -> dict[str, Any]:
    world = build_world(max(4, settings.tokens_per_algorithm // 4))
    tokens = [t for ts in world.tokens.values() for t in ts]
    cached = world.another_verifier(DEFAULT_TOKEN_CACHE_SIZE)
    await _verify_all(world.verifier, tokens)
    await _verify_all(cached, tokens)
    servers = {}
    for name, servicer in (
        ("noop", _NoopLicenseServicer()),
        ("verify", LicenseServicer(world.verifier)),
        ("verify_cached", LicenseServicer(cached)),
    ):
        servers[name] = await _serve(servicer)
    request = json.dumps(
        {
            "targets": {name: address for name, (_, address) in servers.items()},
            "tokens": tokens,
            "rounds": settings.rpc_rounds,
            "seconds": settings.rpc_seconds,
            "concurrency": settings.concurrency,
        }
    )
    per_target: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    try:
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.licenses",
            "--client",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=_ROOT,
        )
        assert client.stdin is not None
        assert client.stdout is not None
        client.stdin.write(request.encode() + b"\n")
        await client.stdin.drain()
        client.stdin.close()
        cpu_at_start = 0.0
        while line := await client.stdout.readline():
            event = json.loads(line)
            if event["event"] == "start":
                cpu_at_start = time.process_time()
            elif event["event"] == "end":
                used = time.process_time() - cpu_at_start
                calls = event["calls"]
                per_target[event["target"]].append((calls / event["seconds"], used / calls))
        if await client.wait() != 0:
            raise RuntimeError("the benchmark client failed")
    finally:
        for server, _ in servers.values():
            await server.stop(0)
    rate = {n: statistics.median(r for r, _ in rows) for n, rows in per_target.items()}
    cpu = {n: statistics.median(c for _, c in rows) for n, rows in per_target.items()}
    report: dict[str, Any] = {
        "noop_per_s": round(rate["noop"]),
        "server_cpu_us_noop": round(cpu["noop"] * 1e6, 1),
        "target": 0.75,
    }
    for name in ("verify", "verify_cached"):
        report[name] = {
            "per_s": round(rate[name]),
            "ratio": round(rate[name] / rate["noop"], 3),
            "server_cpu_us": round(cpu[name] * 1e6, 1),
            "server_cpu_ratio": round(cpu["noop"] / cpu[name], 3),
        }
    return report


async def _client() -> int:
    """The load generator (a separate process): alternates rounds between the two servers."""
    spec = json.loads(sys.stdin.readline())
    tokens: list[str] = spec["tokens"]
    channels = {name: grpc.aio.insecure_channel(addr) for name, addr in spec["targets"].items()}
    stubs = {name: license_pb2_grpc.LicenseServiceStub(ch) for name, ch in channels.items()}
    requests = [license_pb2.VerifyLicenseRequest(token=t) for t in tokens]

    def emit(**event: Any) -> None:
        print(json.dumps(event), flush=True)

    async def run(stub: Any, seconds: float) -> int:
        deadline = time.perf_counter() + seconds
        count = 0

        async def worker(offset: int) -> None:
            nonlocal count
            i = offset
            while time.perf_counter() < deadline:
                await stub.VerifyLicense(requests[i % len(requests)])
                count += 1
                i += 1

        await asyncio.gather(*(worker(i) for i in range(spec["concurrency"])))
        return count

    try:
        for stub in stubs.values():
            await run(stub, 0.2)  # warm: connection, handler caches
        for _ in range(spec["rounds"]):
            for name, stub in stubs.items():
                emit(event="start", target=name)
                start = time.perf_counter()
                calls = await run(stub, spec["seconds"])
                emit(event="end", target=name, calls=calls, seconds=time.perf_counter() - start)
    finally:
        for channel in channels.values():
            await channel.close()
    return 0


# -- Report -------------------------------------------------------------------------------------


def _format(report: dict[str, Any]) -> str:
    lines = ["E-licence verification (medians; ratios are what to read, see bench/LICENSES.md)"]
    for alg, row in report["in_process"].items():
        lines.append(
            f"  {alg:6} bare jwt.decode {row['bare_decode_us']:6.1f} µs | verify() first sight "
            f"{row['first_sight_us']:6.1f} µs, ratio {row['first_sight_ratio']:.2f} "
            f"(cost ×{row['first_sight_cost']:.2f}) | repeat "
            f"{row['repeat_us']:6.1f} µs, ratio {row['repeat_ratio']:.2f}   (target ≥ 0.8)"
        )
        parts = row.get("breakdown")
        if parts:
            lines.append(
                "         tight loops, µs: bare decode {bare_decode_us} | pre-checks "
                "{pre_checks_us} + pyjwt JWS {pyjwt_jws_us} (its parse {pyjwt_parse_us}, "
                "signature {signature_us})".format(**parts)
            )
    rpc = report["rpc"]
    lines.append(
        f"  RPC    no-op {rpc['noop_per_s']}/s, {rpc['server_cpu_us_noop']} µs server CPU/call"
    )
    for name, label in (("verify", "token cache off"), ("verify_cached", "token cache on")):
        row = rpc[name]
        lines.append(
            f"         VerifyLicense, {label}: {row['per_s']}/s, ratio {row['ratio']:.2f}; "
            f"{row['server_cpu_us']} µs server CPU/call, CPU ratio {row['server_cpu_ratio']:.2f}"
            f"   (target ≥ 0.75)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; returns the exit status (0 whether or not targets are met)."""
    parser = argparse.ArgumentParser(prog="python -m bench.licenses", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds: smoke runs")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of verify()")
    parser.add_argument(
        "--breakdown", action="store_true", help="time first sight's parts in tight loops"
    )
    parser.add_argument("--concurrency", type=int, help="RPCs in flight from the client")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.client:
        return asyncio.run(_client())
    settings = QUICK if args.quick else FULL
    if args.concurrency:
        settings = dataclasses.replace(settings, concurrency=args.concurrency)
    report: dict[str, Any] = {"settings": settings.__dict__}

    async def both() -> None:
        report["in_process"] = await bench_in_process(settings, args.profile, args.breakdown)
        report["rpc"] = await bench_rpc(settings)

    asyncio.run(both())
    profile = report["in_process"].pop("profile", None)
    report["load_1min"] = _load()
    print(_format(report))
    print(f"  load average (1 min) at the end: {report['load_1min']}")
    if profile:
        print(profile)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


def _load() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


_: Callable[[Sequence[str] | None], int] = main

if __name__ == "__main__":
    sys.exit(main())
