"""`tongban bundle` as a platform's developer runs it, against a real mTLS gateway and stubs."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import World, start_world
from google.protobuf.duration_pb2 import Duration

from region_stubs.admin.v1 import admin_pb2

ROOT = Path(__file__).resolve().parents[2]
TONGBAN = [sys.executable, "-m", "gateway.tools"]
REGIONS = ("440000", "510000", "110000")
APPLY = [
    "bundle",
    "apply",
    "--origin",
    "110000",
    "--theme",
    "YJS0008",
    "--role",
    "insured=440000",
    "--role",
    "transfer_out=510000",
    "--role",
    "residence=110000",
    "--id-number",
    "110105199003071239",
    "--name",
    "张三",
    "--field",
    "id_number=110105199003071239",
    "--field",
    "name=张三",
    "--field",
    "retire_date=2026-12-31",
    "--field",
    "bank_account=6222020200112233445",
    "--paper",
    "TM01=身份证",
    "--paper",
    "TM02=社保卡",
    "--paper",
    "TM03=申领表",
    "--consent",
    "pension/M04",
]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with start_world(
        tmp_path,
        REGIONS,
        tls=True,
        bootstrap_catalogs=("catalog/2025.1.json", "catalog/2026.1.json"),
    ) as w:
        for stub in w.stubs.values():
            await stub.admin.SetDecisions(
                admin_pb2.SetDecisionsRequest(
                    rules=[
                        admin_pb2.DecisionRule(
                            matter_code="*",
                            action=admin_pb2.DECISION_ACTION_COMPLETE,
                            delay=Duration(nanos=200_000_000),
                        )
                    ]
                )
            )
        yield w


async def tongban(world: World, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *TONGBAN,
        *args,
        "--gateway",
        world.gateway.address,
        "--pki-dir",
        str(world.data_dir / "pki"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_apply_then_watch_to_the_end_then_rate(world: World) -> None:
    code, out, err = await tongban(world, *APPLY, "--json")
    assert code == 0, err
    bundle = json.loads(out)
    assert bundle["applicant"]["idNumber"] != "110105199003071239", "masked"
    states = {m["memberId"]: m["state"] for m in bundle["members"]}
    assert states["pension"] == "APPLICATION_STATE_WAITING"

    code, out, err = await tongban(
        world, "bundle", "status", bundle["name"], "--watch", "--as", "region/110000"
    )
    assert code == 0, err
    blocks = [b for b in out.split("\n\n") if b.strip()]
    assert "COMPLETED" in blocks[-1].splitlines()[0]
    members = blocks[-1].splitlines()[2:]  # after the state line and the due line
    assert [line.split()[0] for line in members] == ["records", "earlier", "pension"]
    assert all("COMPLETED" in line for line in members)
    assert "Traceback" not in err

    code, out, err = await tongban(
        world, "bundle", "rate", bundle["bundleId"], "--origin", "110000", "--score", "4",
        "--reason", "no_repeated_materials", "--region", "440000",
    )  # fmt: skip
    assert code == 0, err
    assert "rated 4/5 440000" in out

    code, out, err = await tongban(
        world, "bundle", "rate", bundle["bundleId"], "--origin", "110000", "--score", "2",
        "--region", "440000",
    )  # fmt: skip
    assert code == 3, (out, err)  # refused by the gateway
    assert "RATING_EXISTS" in err
    assert "Traceback" not in err


async def test_mistakes_are_one_line(world: World) -> None:
    code, _, err = await tongban(world, *APPLY[:-2], "--consent", "pension-M04")
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "--consent takes KEY/VALUE" in err
    code, _, err = await tongban(
        world, "bundle", "rate", "bundles/x", "--origin", "110000", "--score", "5",
        "--reason", "lovely",
    )  # fmt: skip
    assert code == 2
    assert "--reason 'lovely' is not one of fast, slow" in err
