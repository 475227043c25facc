"""The commands for what users look for, run as a user runs them against a real `tongban up`:
reading the catalog, resolving a code, publishing catalogs and lists, making a stub decide a
case; with their readable output, `--json`, the flags named in refusals, and exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_cli import ROOT, STANDARDS, TONGBAN, run

from gateway.catalog import signing
from gateway.errors import MESSAGES_ZH
from gateway.routing.health import region_service_name
from gateway.tools.commands_publish import catalog_in_force
from gateway.tools.local_files import dev_standards_key

REFUSED, UNREACHABLE, USAGE, FAILED = 3, 4, 2, 1
SICHUAN_CODE = "51200268000000-510000000000-000-11510000MBHU4N6YXE-1-00"  # 异地就医结算备案


def plain(out: str) -> list[str]:
    """The output's lines with runs of spaces made one (aligned columns, padded titles)."""
    return [" ".join(line.split()) for line in out.splitlines()]


DROPPED = "002035011000"  # 异地就医结算备案, which 广东 and 四川 implement


def successor(tmp_path: Path, version: str, *, drop: str = "") -> Path:
    """Catalog 2026.1 as `version`, in force from 2026-07-01 (2099 for a 2099 version), less
    the matter `drop`; a file in `tmp_path`."""
    data = json.loads((STANDARDS / "catalog" / "2026.1.json").read_text("utf-8"))
    year = version.split(".", maxsplit=1)[0]
    data.update(version=version, effective_time=f"{year}-07-01T00:00:00+08:00")
    if year == "2099":
        data["effective_time"] = "2099-01-01T00:00:00+08:00"
    data["matters"] = [m for m in data["matters"] if m["code"] != drop]
    path = tmp_path / f"{version}.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@dataclass
class Up:
    """A running `tongban up` and where its parts are."""

    process: asyncio.subprocess.Process
    data: Path
    gateway: str = ""
    stubs: dict[str, str] = field(default_factory=dict)
    standards_key: dict[str, str] = field(default_factory=dict)
    stderr: list[str] = field(default_factory=list)

    def flags(self) -> list[str]:
        """What a client command needs to reach this federation."""
        return ["--gateway", self.gateway, "--pki-dir", str(self.data / "pki")]


@contextlib.asynccontextmanager
async def running_up(tmp_path: Path, regions: str = "440000,510000") -> AsyncIterator[Up]:
    data = tmp_path / "data"
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
        regions,
        "--data-dir",
        str(data),
        "--standards-dir",
        str(STANDARDS),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    up = Up(process, data)

    async def collect_stderr() -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            up.stderr.append(line.decode())

    reader = asyncio.create_task(collect_stderr())
    try:
        while not (up.gateway and up.standards_key):
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, "tongban up exited before listening:\n" + "".join(up.stderr)
            event = json.loads(line)
            if event["event"] == "listening" and event["service"] == "gateway":
                up.gateway = event["address"]
            elif event["event"] == "listening":
                up.stubs[event["region"]] = event["address"]
            elif event["event"] == "standards-key":
                up.standards_key = event
        yield up
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 60)
        await reader
    assert code == 0, "".join(up.stderr)


async def test_up_makes_a_standards_key_publish_uses_it_and_says_the_state_first(
    tmp_path: Path,
) -> None:
    async with running_up(tmp_path) as up:
        key = Path(up.standards_key["private_key"])
        assert key == up.data / "keys" / "national-standards-body.key.pem"
        assert (key.stat().st_mode & 0o777) == 0o600
        federation = json.loads((up.data / "federation.json").read_text())
        assert federation["gateways"] == [up.gateway]
        assert federation["regions"] == up.stubs
        assert federation["standards_key"]["private_key"] == str(key)

        publish = ["catalog", "publish", *up.flags(), "--data-dir", str(up.data)]
        code, out, err = await run(*publish, str(successor(tmp_path, "2026.2")), "--validate-only")
        assert code == 0, err
        assert out.splitlines()[0] == (
            "catalog 2026.2 is valid and was not published: it would become CURRENT at once "
            "(effective since 2026-06-30 16:00 UTC)"
        )
        assert f"signed with {key} as national-standards-body" in err
        later = successor(tmp_path, "2099.1")
        code, out, err = await run(*publish, str(later), "--validate-only")
        assert code == 0, err
        assert out.splitlines()[0] == (
            "catalog 2099.1 is valid and was not published: it would be SCHEDULED, and become "
            "current at 2098-12-31 16:00 UTC"
        )

        versions = ["catalog", "versions", *up.flags()]
        code, out, err = await run(*versions, "--json")
        assert code == 0, err
        assert [v["version"] for v in json.loads(out)["catalogVersions"]] == ["2026.1", "2025.1"]

        # Signed with a key the gateway does not trust: refused, and the clerk's message shown.
        stranger = tmp_path / "stranger.key.pem"
        stranger.write_bytes(signing.private_pem(signing.generate_private_key()))
        code, out, err = await run(*publish, str(later), "--signing-key", str(stranger))
        assert (code, out) == (REFUSED, "")
        assert "tongban: refused (UNAUTHENTICATED, CATALOG_SIGNATURE_INVALID)" in err
        assert f"zh-CN: {MESSAGES_ZH['CATALOG_SIGNATURE_INVALID']}" in err
    assert not (up.data / "federation.json").exists()  # gone with the federation
    assert any(f"signed with {key}" in line for line in up.stderr)  # said at start
    # `up` logs as the gateway does: one JSON object per line.
    logged = [json.loads(line) for line in up.stderr if line.startswith("{")]
    assert any(r["message"] == "seeded the store from " + str(STANDARDS) for r in logged)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in logged)


async def test_a_published_version_is_listed_with_its_state_and_its_themes_read(
    tmp_path: Path,
) -> None:
    async with running_up(tmp_path) as up:
        publish = ["catalog", "publish", *up.flags(), "--data-dir", str(up.data)]
        versions = ["catalog", "versions", *up.flags()]
        code, out, err = await run(*publish, str(successor(tmp_path, "2026.2", drop=DROPPED)))
        assert code == 0, err
        assert out.startswith("catalog 2026.2 published: CURRENT (effective since 2026-06-30")
        assert "from 2026.1: 0 added, 1 removed, 0 changed matters" in out
        assert "Implementation lists affected" in out
        assert f"│ 440000   │ {DROPPED} " in out  # 广东 implements it
        code, out, err = await run(*versions)
        assert code == 0, err
        rows = [line.split("│")[1:3] for line in out.splitlines() if line.startswith("│")]
        assert [[cell.strip() for cell in row] for row in rows] == [
            ["2026.2", "CURRENT"],
            ["2026.1", "SUPERSEDED"],
            ["2025.1", "SUPERSEDED"],
        ]

        code, out, err = await run("themes", "list", *up.flags())
        assert code == 0, err
        assert plain(out)[0] == "8 themes (一件事) in catalog 2026.2"
        code, out, err = await run("themes", "show", "YJS0001", *up.flags())
        assert code == 0, err
        assert "养老保险关系转移接续" in out
        assert "transfer_out" in out


async def test_reading_the_catalog_and_refusals_that_name_the_flags_typed(tmp_path: Path) -> None:
    async with running_up(tmp_path) as up:
        code, out, err = await run("matters", "list", *up.flags(), "--json")
        assert code == 0, err
        matters = json.loads(out)["matters"]
        assert len(matters) == json.loads(out)["totalSize"] == 49
        code, out, err = await run("matters", "list", "--mode", "fully-online", *up.flags())
        assert code == 0, err
        online = [
            m for m in matters if "CROSS_REGION_MODE_FULLY_ONLINE" in m.get("crossRegionModes", [])
        ]
        assert out.splitlines()[0].strip() == f"{len(online)} matters in catalog 2026.1"
        rows = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
        assert rows == [m["code"] for m in online]
        code, out, err = await run("matters", "search", "异地就医", *up.flags())
        assert code == 0, err
        assert out.splitlines()[0].strip() == "1 matters matching '异地就医' in catalog 2026.1"
        assert "│ 002035011000 │" in out
        code, out, err = await run("matters", "show", "002035011000", *up.flags())
        assert code == 0, err
        assert "Matter 002035011000 异地就医结算备案" in plain(out)
        assert "M01" in out

        code, out, err = await run("resolve", "--region", "510000", SICHUAN_CODE, *up.flags())
        assert code == 0, err
        assert "National matter 002035011000 异地就医结算备案" in plain(out)
        assert "Mapping ONE_TO_ONE" in plain(out)
        code, out, err = await run("resolve", "--region", "51000", SICHUAN_CODE, *up.flags())
        assert code == REFUSED
        assert out == ""
        assert "  --region: " in err
        assert "region_code" not in err
        code, _, err = await run("resolve", "--region", "510000", "NO-SUCH", *up.flags())
        assert code == REFUSED
        assert "LOCAL_CODE_NOT_FOUND" in err
        assert f"zh-CN: {MESSAGES_ZH['LOCAL_CODE_NOT_FOUND']}" in err

        apply = ["apply", *up.flags(), "--origin", "440000", "--target", "51000"]
        apply += ["--local-code", "11440000MBFYX5N41F2002035011000", "--name", "张三"]
        apply += ["--id-number", "110105199003071230", "--paper", "M01=居民身份证复印件"]
        code, out, err = await run(*apply)
        assert (code, out) == (REFUSED, "")
        assert "  --target: " in err
        assert "  --id-number: " in err
        assert "target_region" not in err
        assert "applicant.id_number" not in err
        assert "110105199003071230" not in err  # the applicant's number is not echoed


async def test_an_implementation_list_is_checked_by_the_gateway_or_refused_row_by_row(
    tmp_path: Path,
) -> None:
    async with running_up(tmp_path) as up:
        plist = ["catalog", "publish-list", *up.flags(), "--standards-dir", str(STANDARDS)]
        sichuan = STANDARDS / "implementations" / "510000.json"
        code, out, err = await run(*plist, str(sichuan), "--validate-only")
        assert code == 0, err
        assert out.splitlines()[0] == (
            "510000 implementation list is valid and was not published: 37 rows, checked "
            "against catalog 2026.1, 6 warning(s)"
        )
        assert "TRUNCATED_USCC" in out
        broken = json.loads(sichuan.read_text("utf-8"))
        broken["entries"][4]["national_codes"] = ["000999999000"]
        path = tmp_path / "510000.json"
        path.write_text(json.dumps(broken, ensure_ascii=False), encoding="utf-8")
        code, out, err = await run(*plist, str(path))
        assert (code, out) == (REFUSED, "")
        assert f"  {path}: entries[4].national_codes[0]: UNKNOWN_NATIONAL_CODE" in err
        broken["entries"][4]["cancel_dat"] = "2020-01-01"
        path.write_text(json.dumps(broken, ensure_ascii=False), encoding="utf-8")
        code, out, err = await run(*plist, str(path))
        assert code == FAILED  # not sent: the gateway would never see the misspelt field
        assert "entries[4].cancel_dat" in out
        assert "UNKNOWN_FIELD" in out
        assert "nothing was sent" in err


async def test_a_stub_decides_a_case_and_the_gateway_follows(tmp_path: Path) -> None:
    async with running_up(tmp_path) as up:
        # The stubs `up` connected after start have their health entries.
        pki = up.data / "pki"
        credentials = grpc.ssl_channel_credentials(
            (pki / "ca.pem").read_bytes(),
            (pki / "clients" / "ops-ops.key").read_bytes(),
            (pki / "clients" / "ops-ops.pem").read_bytes(),
        )
        async with grpc.aio.secure_channel(up.gateway, credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for region in ("440000", "510000"):
                request = health_pb2.HealthCheckRequest(service=region_service_name(region))
                for _ in range(100):
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        answer = await health.Check(request, timeout=5)
                        if answer.status == health_pb2.HealthCheckResponse.SERVING:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(f"no SERVING health entry for {region}")

        apply = ["apply", "--json", *up.flags(), "--origin", "440000", "--target", "510000"]
        apply += ["--local-code", "11440000MBFYX5N41F2002035011000", "--name", "张三"]
        apply += ["--id-number", "110105199003071239"]
        apply += ["--paper", "M01=居民身份证复印件", "--paper", "M03=备案登记表"]
        code, out, err = await run(*apply)
        assert code == 0, err
        application = json.loads(out)["applicationId"]

        decide = ["stub", "decide", "--region", "510000", application, "accept"]
        decide += ["--data-dir", str(up.data)]  # the stub and the PKI: from the federation
        code, out, err = await run(*decide, "--reason", "材料齐全")
        assert code == 0, err
        assert out.strip() == (
            f"510000 decided application {application}: ACCEPTED; the gateway now has it as "
            "ACCEPTED"
        )
        code, out, err = await run("status", application, *up.flags())
        assert code == 0, err
        assert "State ACCEPTED (材料齐全)" in plain(out)
        assert "110105********1239" in out
        assert "张三" not in out

        # Moving it back is refused by the stub; a province without a stub is a usage error.
        code, out, err = await run(*decide[:5], "reject", *decide[6:])
        assert (code, out) == (REFUSED, "")
        assert "FAILED_PRECONDITION" in err
        code, out, err = await run(
            "stub",
            "decide",
            "--region",
            "330000",
            application,
            "accept",
            "--data-dir",
            str(up.data),
        )
        assert (code, out) == (USAGE, "")
        assert err.strip() == (
            f"tongban: no region stub of 330000 known: the federation in "
            f"{up.data / 'federation.json'} has 440000, 510000; give --stub HOST:PORT or "
            "--data-dir"
        )
    code, _, err = await run(*decide)  # the federation has stopped
    assert code == USAGE
    assert "no `tongban up` runs with data directory" in err


async def test_validate_reports_every_problem_of_a_list_in_one_pass(tmp_path: Path) -> None:
    listed = json.loads((STANDARDS / "implementations" / "440000.json").read_text("utf-8"))
    listed["entries"][0]["agency_name"] = ""
    listed["entries"][1]["local_code"] = "XK00101000"  # not the NATIONAL layout
    listed["entries"][2]["cancel_dat"] = "2020-01-01"
    listed["entries"][3]["cancel_date"] = "2020-02-30"
    listed["entries"][4]["national_codes"] = ["000999999000"]
    listed["colour"] = "red"
    path = tmp_path / "440000.json"
    path.write_text(json.dumps(listed, ensure_ascii=False), encoding="utf-8")
    against = str(STANDARDS / "catalog" / "2025.1.json")
    validate = ["catalog", "validate", str(path), "--standards-dir", str(STANDARDS)]
    code, out, err = await run(*validate, "--against", against, "--json")
    assert code == FAILED, err
    report = json.loads(out)
    assert [(p["field"], p["severity"], p["reason"]) for p in report["problems"]] == [
        ("colour", "error", "UNKNOWN_FIELD"),
        ("entries[0].agency_name", "warning", "MISSING_AGENCY_NAME"),
        ("entries[1].local_code", "warning", "NOT_NATIONAL_LAYOUT"),
        ("entries[2].cancel_dat", "error", "UNKNOWN_FIELD"),
        ("entries[3].cancel_date", "error", "BAD_DATE"),
        ("entries[4].national_codes[0]", "error", "UNKNOWN_NATIONAL_CODE"),
        ("entries[35].cancel_date", "warning", "RETIRED"),
    ]
    assert (report["rows"], report["errors"], report["warnings"]) == (40, 4, 3)
    code, out, _ = await run(*validate, "--against", against)
    assert code == FAILED
    assert out.splitlines()[-1] == (
        f"{path}: 40 rows, 4 error(s), 3 warning(s) (checked against catalog 2025.1, {against})"
    )
    # Without --against: the catalog in force among the bundled ones.
    in_force = catalog_in_force(STANDARDS, datetime.now(UTC))
    code, out, _ = await run(*validate)
    assert f"(checked against catalog {in_force.stem}, {in_force})" in out.splitlines()[-1]


def test_the_catalog_in_force_is_the_newest_whose_effective_time_has_passed() -> None:
    def at(moment: str) -> str:
        return catalog_in_force(STANDARDS, datetime.fromisoformat(moment)).stem

    assert at("2025-03-01T00:00:00+08:00") == "2025.1"
    assert at("2025-07-01T00:00:00+08:00") == "2025.2"
    assert at("2030-01-01T00:00:00+08:00") == "2026.1"
    assert at("2020-01-01T00:00:00+08:00") == "2025.1"  # none yet: the oldest


def test_the_development_standards_key_is_made_once_and_reused(tmp_path: Path) -> None:
    first = dev_standards_key(tmp_path)
    made = first.private_key.read_bytes(), first.public_key.read_bytes()
    again = dev_standards_key(tmp_path)
    assert again == first
    assert (again.private_key.read_bytes(), again.public_key.read_bytes()) == made
    first.public_key.unlink()  # half a pair is no pair: a new one
    assert dev_standards_key(tmp_path).private_key.read_bytes() != made[0]


async def test_a_gateway_that_is_not_there_is_one_line_and_its_own_exit_code() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{s.getsockname()[1]}"
    for command in (
        ["matters", "list"],
        ["catalog", "versions"],
        ["status", "0b8f2c6e-0000-4000-8000-000000000000"],
    ):
        code, out, err = await run(*command, "--gateway", nobody, "--insecure")
        assert (code, out) == (UNREACHABLE, ""), err
        assert err.startswith(f"tongban: nothing listens at {nobody}: is the gateway running?")
        assert err.count("\n") == 1
        assert "Traceback" not in err
