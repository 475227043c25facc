"""The `tongban` command as a user runs it: real processes, real ports, real files."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.storage.migrations import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]
STANDARDS = ROOT / "standards"
TONGBAN = [sys.executable, "-m", "gateway.tools"]  # what the `tongban` script runs


async def run(*args: str, cwd: Path = ROOT) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *TONGBAN, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 240)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_demo_runs_the_whole_journey() -> None:
    code, out, err = await run("demo", "--standards-dir", str(STANDARDS))
    assert code == 0, out + err
    assert "✗" not in out
    assert out.count("✓") == 14
    assert "14/14 steps as expected" in out
    # the 一件事 scenes: parallel members, a flowing licence, a rating, a cancelled dependant
    assert "pension's M04 (verified, never uploaded); rated 5/5" in out
    assert "pension CANCELLED (stopped by earlier)" in out


async def test_up_serves_every_service_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *TONGBAN,
        "up",
        "--port",
        "0",
        "--stub-base-port",
        "0",
        "--metrics-port",
        "-1",
        "--regions",
        "440000,510000,330000,110000",
        "--data-dir",
        str(tmp_path / "data"),
        "--standards-dir",
        str(STANDARDS),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    addresses: dict[str, str] = {}
    try:
        while "gateway" not in addresses:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, "tongban up exited before listening"
            event = json.loads(line)
            if event.get("event") == "listening":
                addresses[event.get("region", event["service"])] = event["address"]
        assert set(addresses) == {"gateway", "440000", "510000", "330000", "110000"}
        # mTLS by default, with the dev PKI made on first start.
        pki = tmp_path / "data" / "pki"
        credentials = grpc.ssl_channel_credentials(
            (pki / "ca.pem").read_bytes(),
            (pki / "clients" / "ops-ops.key").read_bytes(),
            (pki / "clients" / "ops-ops.pem").read_bytes(),
        )
        for address in addresses.values():
            async with grpc.aio.secure_channel(address, credentials) as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            async with grpc.aio.insecure_channel(address) as channel:
                with pytest.raises(grpc.aio.AioRpcError):
                    await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=10
                    )
        assert (tmp_path / "data" / "gateway.sqlite3").exists()

        # A platform submits with its own certificate, found in the dev PKI.
        apply = [
            "apply",
            "--json",
            "--gateway",
            addresses["gateway"],
            "--pki-dir",
            str(pki),
            "--origin",
            "440000",
            "--target",
            "510000",
            "--local-code",
            "11440000MBFYX5N41F2002035011000",
            "--id-number",
            "110105199003071239",
            "--name",
            "张三",
            "--paper",
            "M01=居民身份证复印件",
            "--paper",
            "M03=备案登记表",
        ]
        code, out, err = await run(*apply)
        assert code == 0, err
        submitted = json.loads(out)
        assert submitted["state"] == "APPLICATION_STATE_DELIVERED"
        status = ["status", "--json", submitted["applicationId"], "--gateway", addresses["gateway"]]
        status += ["--pki-dir", str(pki)]
        code, out, err = await run(*status)  # as the operator
        assert code == 0, err
        assert json.loads(out)["state"] == "APPLICATION_STATE_DELIVERED"
        code, _, err = await run(*status, "--as", "region/330000")  # not a party
        assert code == 3  # refused by the gateway
        assert "NOT_A_PARTY" in err
        # Claiming to be Guangdong with Sichuan's certificate is refused.
        impostor = [*apply, "--cert", str(pki / "clients" / "region-510000.pem")]
        impostor += ["--key", str(pki / "clients" / "region-510000.key")]
        impostor += ["--ca", str(pki / "ca.pem")]
        code, _, err = await run(*impostor)
        assert code == 3
        assert "NOT_OWN_REGION" in err
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 60)
    assert code == 0
    code, out, _ = await run("audit", "verify", str(tmp_path / "data" / "audit.jsonl"))
    assert code == 0, out
    assert json.loads(out)["records"] >= 3  # submission, delivery, denial


async def test_catalog_validate_reports_every_problem_with_its_place(tmp_path: Path) -> None:
    code, out, _ = await run(
        "catalog", "validate", str(STANDARDS / "implementations" / "510000.json")
    )
    assert code == 0
    assert "37 rows, 0 error(s), 6 warning(s)" in out
    assert "│ entries[28].agency_code │ warning  │ TRUNCATED_USCC " in out
    assert "│ entries[34].agency_code │ warning  │ PLACEHOLDER " in out
    broken = json.loads((STANDARDS / "catalog" / "2025.1.json").read_text("utf-8"))
    broken["matters"][0]["code"] = "001"
    broken["matters"][3]["type"] = "99"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken, ensure_ascii=False), encoding="utf-8")
    code, out, _ = await run("catalog", "validate", str(path))
    assert code == 1
    assert "matters[0].code" in out
    assert "matters[3].type" in out


async def test_keygen_sign_and_diff_offline(tmp_path: Path) -> None:
    code, out, _ = await run("catalog", "keygen", "--name", "body", "--out-dir", str(tmp_path))
    assert code == 0
    key = json.loads(out)["private_key"]
    assert (Path(key).stat().st_mode & 0o777) == 0o600
    signed = tmp_path / "2025.2.jws"
    code, _, err = await run(
        "catalog",
        "sign",
        str(STANDARDS / "catalog" / "2025.2.json"),
        "--key",
        key,
        "--publisher",
        "body",
        "--out",
        str(signed),
        "--standards-dir",
        str(STANDARDS),
    )
    assert code == 0, err
    assert signed.read_text().count(".") == 2
    code, out, _ = await run(
        "catalog",
        "diff",
        "--json",
        str(STANDARDS / "catalog" / "2025.1.json"),
        str(STANDARDS / "catalog" / "2025.2.json"),
    )
    assert code == 0
    diff = json.loads(out)
    assert (len(diff["added"]), len(diff["removed"]), len(diff["changed"])) == (2, 2, 3)


async def test_keygen_refuses_to_overwrite_a_key_pair_unless_forced(tmp_path: Path) -> None:
    code, out, _ = await run("catalog", "keygen", "--name", "body", "--out-dir", str(tmp_path))
    assert code == 0
    public = Path(json.loads(out)["public_key"])
    first = public.read_bytes()
    code, out, err = await run("catalog", "keygen", "--name", "body", "--out-dir", str(tmp_path))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "body.key.pem exists" in err
    assert "--force" in err
    assert public.read_bytes() == first  # nothing overwritten
    code, _, _ = await run(
        "catalog", "keygen", "--name", "body", "--out-dir", str(tmp_path), "--force"
    )
    assert code == 0
    assert public.read_bytes() != first


async def test_sign_refuses_a_catalog_that_fails_validation_unless_forced(tmp_path: Path) -> None:
    code, out, _ = await run("catalog", "keygen", "--name", "body", "--out-dir", str(tmp_path))
    key = json.loads(out)["private_key"]
    broken = json.loads((STANDARDS / "catalog" / "2025.2.json").read_text(encoding="utf-8"))
    broken["matters"][0]["type"] = "99"
    catalog = tmp_path / "broken.json"
    catalog.write_text(json.dumps(broken, ensure_ascii=False), encoding="utf-8")
    signed = tmp_path / "broken.jws"
    sign = ["catalog", "sign", str(catalog), "--key", key, "--out", str(signed)]
    code, out, err = await run(*sign, "--standards-dir", str(STANDARDS))
    assert code == 1
    assert "matters[0]" in out
    assert "a gateway would refuse it" in err
    assert not signed.exists()
    code, _, err = await run(*sign, "--standards-dir", str(STANDARDS), "--force")
    assert code == 0, err
    assert signed.read_text().count(".") == 2


async def test_migrate_brings_a_postgresql_schema_up_and_prints_the_version(
    postgres_url: str,
) -> None:
    for _ in range(2):  # the second run finds nothing to do
        code, out, err = await run("migrate", "--store", postgres_url)
        assert code == 0, err
        assert json.loads(out) == {"store": postgres_url, "schema_version": SCHEMA_VERSION}

    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(
            "INSERT INTO schema_version (version, description) VALUES ($1, 'newer')",
            SCHEMA_VERSION + 1,
        )
    finally:
        await conn.close()
    code, out, err = await run("migrate", "--store", postgres_url)
    assert code == 2
    assert "STORE_SCHEMA_TOO_NEW" in err
    assert f"version {SCHEMA_VERSION + 1}, newer than this gateway's {SCHEMA_VERSION}" in err


async def test_migrate_names_an_unreachable_database_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://gw:s3cret-pw@127.0.0.1:{port}/tongban"
    code, out, err = await run("migrate", "--store", url)
    assert code == 2
    assert "STORE_UNAVAILABLE" in err
    assert "s3cret" not in out + err


async def test_migrate_creates_the_default_sqlite_file(tmp_path: Path) -> None:
    code, out, err = await run("migrate", "--data-dir", str(tmp_path))
    assert code == 0, err
    store = tmp_path / "gateway.sqlite3"
    assert json.loads(out) == {"store": str(store), "schema_version": 1}
    assert store.exists()


async def test_a_second_gateway_on_a_taken_port_is_refused_in_one_line(tmp_path: Path) -> None:
    # The holder allows port sharing, as gRPC servers do by default: a gateway that asked to
    # share would bind beside it and take half of its calls.
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        code, out, err = await run(
            "gateway",
            "--insecure",
            "--port",
            str(port),
            "--metrics-port",
            "-1",
            "--data-dir",
            str(tmp_path / "data"),
            "--standards-dir",
            str(STANDARDS),
        )
    finally:
        holder.close()
    assert code == 2, out + err
    refusal = [line for line in err.splitlines() if line.startswith("tongban: ")]
    assert refusal == [
        f"tongban: PORT_IN_USE: port {port} on 127.0.0.1 is taken (another gateway?): stop it "
        "or choose another --port"
    ], err
    assert "Traceback" not in err


def free_ports(count: int) -> int:
    """A port from which `count` consecutive ports are free (now)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise AssertionError(f"no {count} consecutive free ports")


APPLY = [
    "apply",
    "--json",
    "--origin",
    "440000",
    "--target",
    "510000",
    "--local-code",
    "11440000MBFYX5N41F2002035011000",
    "--id-number",
    "110105199003071239",
    "--name",
    "张三",
    "--paper",
    "M01=居民身份证复印件",
    "--paper",
    "M03=备案登记表",
]


async def test_up_runs_replicas_on_consecutive_ports_and_the_cli_balances_over_them(
    tmp_path: Path, postgres_url: str
) -> None:
    base = free_ports(2)
    data = tmp_path / "data"
    process = await asyncio.create_subprocess_exec(
        *TONGBAN,
        "up",
        "--store",
        postgres_url,
        "--replicas",
        "2",
        "--port",
        str(base),
        "--stub-base-port",
        "0",
        "--metrics-port",
        "-1",
        "--regions",
        "440000,510000",
        "--data-dir",
        str(data),
        "--standards-dir",
        str(STANDARDS),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    replicas: dict[str, str] = {}
    try:
        while len(replicas) < 2:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, "tongban up exited before listening"
            event = json.loads(line)
            if event.get("event") == "listening" and event["service"] == "gateway":
                replicas[event["replica"]] = event["address"]
        assert replicas == {"1": f"127.0.0.1:{base}", "2": f"127.0.0.1:{base + 1}"}
        pki = ["--pki-dir", str(data / "pki")]
        with socket.socket() as s:  # an address where nothing listens: skipped
            s.bind(("127.0.0.1", 0))
            nobody = f"127.0.0.1:{s.getsockname()[1]}"
        gateways = ",".join([nobody, *replicas.values()])
        ids = []
        for n in range(3):
            code, out, err = await run(*APPLY, "--gateway", gateways, "--request-id", f"r{n}", *pki)
            assert code == 0, err
            submitted = json.loads(out)
            assert submitted["state"] == "APPLICATION_STATE_DELIVERED"
            ids.append(submitted["applicationId"])
        # The same request id through either replica: the same application.
        for address in replicas.values():
            code, out, err = await run(*APPLY, "--gateway", address, "--request-id", "r0", *pki)
            assert code == 0, err
            assert json.loads(out)["applicationId"] == ids[0]
        code, out, err = await run("status", ids[1], "--gateway", replicas["2"], *pki)
        assert code == 0, err
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 60)
    assert code == 0
    assert sorted(p.name for p in data.glob("audit*.jsonl")) == ["audit-1.jsonl", "audit-2.jsonl"]
    code, out, _ = await run("audit", "verify", str(data))
    assert code == 0, out
    assert json.loads(out)["records"] >= 5  # 3 submissions + deliveries, 2 replays, a read


async def test_up_refuses_replicas_without_a_postgresql_store(tmp_path: Path) -> None:
    code, _, err = await run("up", "--replicas", "2", "--data-dir", str(tmp_path))
    assert code == 2
    assert "PostgreSQL" in err


async def test_up_refuses_a_bad_decision_rule_in_one_line(tmp_path: Path) -> None:
    code, _, err = await run(
        "up", "--auto-decide", "--decide", "*=reject:2s", "--data-dir", str(tmp_path)
    )
    assert code == 2
    assert err.strip().splitlines() == [
        "tongban: up: --decide: decide[1]: each matter at most once"
    ]
    assert not (tmp_path / "gateway.sqlite3").exists()


async def test_version_prints_the_installed_version() -> None:
    code, out, err = await run("--version")
    assert code == 0, err
    assert out.strip() == f"tongban {metadata.version('tongban')}"


def test_make_run_takes_another_port() -> None:
    def planned(*args: str) -> list[str]:
        dry = subprocess.run(
            ["make", "--no-print-directory", "-n", "run", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return [line.strip() for line in dry.stdout.splitlines() if "tongban up" in line]

    assert planned("PORT=50099") == [".venv/bin/tongban up --port 50099 --stub-base-port 0"]
    assert planned() == [".venv/bin/tongban up"]


async def test_ordinary_mistakes_get_one_line_and_no_traceback(tmp_path: Path) -> None:
    key = tmp_path / "missing.key.pem"
    cases = [
        (
            ("catalog", "sign", str(tmp_path / "nope.json"), "--key", str(key), "--out", "x"),
            f"tongban: no such file or directory: {tmp_path / 'nope.json'}",
        ),
        (
            ("catalog", "validate", str(tmp_path)),
            f"tongban: a file was expected, not the directory {tmp_path}",
        ),
    ]
    for args, line in cases:
        code, _, err = await run(*args)
        assert code == 2, err
        assert err.strip().splitlines() == [line]
    catalog = str(STANDARDS / "catalog" / "2025.1.json")
    code, out, err = await run(
        "--log-level", "debug", "catalog", "validate", catalog, "--standards-dir", str(STANDARDS)
    )
    assert code == 0, err
    assert "Traceback" not in err
    assert "no problems" in out
