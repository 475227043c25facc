"""`tongban audit verify` on a log a real gateway wrote, and on every kind of tampering."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from conftest import start_world

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import application_pb2_grpc
from gateway.security.identity import Role
from gateway.tools.cli import main


@pytest.fixture(scope="module")
def real_log(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The audit log of a short session: denials by three provinces, reads, a list."""

    async def session(data_dir: Path) -> bytes:
        async with start_world(data_dir, tls=True) as world:
            for code in ("440000", "510000", "520000"):
                stub = application_pb2_grpc.ApplicationServiceStub(
                    await world.channel_as(Role.REGION, code)
                )
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.ListApplications(pb.ListApplicationsRequest(region_code="330000"))
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.SubmitApplication(
                        pb.SubmitApplicationRequest(request_id="r", origin_region="330000")
                    )
            await world.gateway.auditor.flush()  # type: ignore[union-attr]
            path = world.gateway.config.audit_path
        return path.read_bytes()

    return asyncio.run(session(tmp_path_factory.mktemp("audit")))


def verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = main(["audit", "verify", str(path)])
    return code, json.loads(capsys.readouterr().out)


def test_a_real_log_verifies(
    real_log: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(real_log)
    code, out = verify(path, capsys)
    assert code == 0
    assert out["ok"] is True
    assert out["records"] == len(real_log.splitlines()) == 6


def _edit(lines: list[bytes]) -> list[bytes]:
    record = json.loads(lines[2])
    record["outcome"] = "OK"
    return [*lines[:2], json.dumps(record).encode() + b"\n", *lines[3:]]


def _insert(lines: list[bytes]) -> list[bytes]:
    return [*lines[:3], lines[2], *lines[3:]]


TAMPERING: dict[str, tuple[Callable[[list[bytes]], list[bytes]], int]] = {
    "EDITED": (_edit, 3),
    "REMOVED": (lambda lines: [*lines[:2], *lines[3:]], 3),
    "REORDERED": (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], 2),
    "INSERTED": (_insert, 4),
    "TRUNCATED_LINE": (lambda lines: [*lines[:-1], lines[-1][:-10]], 6),
    "BAD_JSON": (lambda lines: [*lines[:4], b"{not json\n", *lines[5:]], 5),
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_each_kind_of_tampering_is_caught(
    kind: str, real_log: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper, bad_record = TAMPERING[kind]
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(tamper(real_log.splitlines(keepends=True))))
    code, out = verify(path, capsys)
    assert code == 1
    assert out["ok"] is False
    assert out["kind"] == kind
    assert out["record"] == bad_record


def test_cutting_the_end_is_caught_with_a_kept_head(
    real_log: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(real_log)
    _, out = verify(path, capsys)
    head = out["head"]
    path.write_bytes(b"".join(real_log.splitlines(keepends=True)[:-1]))
    assert main(["audit", "verify", str(path), "--expect-head", str(head)]) == 1
    assert json.loads(capsys.readouterr().out)["kind"] == "REMOVED"


def test_each_replicas_chain_in_a_directory_is_verified_together(
    real_log: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = real_log.splitlines(keepends=True)
    (tmp_path / "audit-r1.jsonl").write_bytes(real_log)
    (tmp_path / "audit-r2.jsonl").write_bytes(b"".join(lines[:3]))  # a chain of its own
    (tmp_path / "audit.key").write_bytes(b"k" * 32)  # not a log: left alone
    code, out = verify(tmp_path, capsys)
    assert code == 0
    assert out["ok"] is True
    assert out["records"] == 9
    chains = out["chains"]
    assert isinstance(chains, list)
    assert [(Path(c["path"]).name, c["records"]) for c in chains] == [
        ("audit-r1.jsonl", 6),
        ("audit-r2.jsonl", 3),
    ]

    (tmp_path / "audit-r2.jsonl").write_bytes(b"".join(_edit(lines)[:3]))
    code, out = verify(tmp_path, capsys)
    assert code == 1
    assert out["ok"] is False
    chains = out["chains"]
    assert isinstance(chains, list)
    assert [c["ok"] for c in chains] == [True, False]
    assert chains[1]["kind"] == "EDITED"


def test_a_kept_head_names_its_chain_among_several(
    real_log: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "audit-r1.jsonl", tmp_path / "audit-r2.jsonl"
    first.write_bytes(real_log)
    second.write_bytes(real_log)
    _, out = verify(first, capsys)
    head = f"audit-r1.jsonl={out['head']}"
    first.write_bytes(b"".join(real_log.splitlines(keepends=True)[:-1]))
    assert main(["audit", "verify", str(first), str(second), "--expect-head", head]) == 1
    chains = json.loads(capsys.readouterr().out)["chains"]
    assert [c.get("kind") for c in chains] == ["REMOVED", None]
    assert main(["audit", "verify", str(tmp_path), "--expect-head", str(out["head"])]) == 2
    assert "name one of the logs" in capsys.readouterr().err
