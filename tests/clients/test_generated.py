"""The client's copy of the generated API: in sync with proto/, and sharing one descriptor pool
with the gateway's copy in one process."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from gateway.api.v1 import application_pb2 as gateway_application_pb2
from gateway.api.v1 import catalog_pb2 as gateway_catalog_pb2
from tongban_client.api.v1 import application_pb2, catalog_pb2, license_pb2

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"
COMMITTED = CLIENT / "src" / "tongban_client" / "api"


def tree(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".pyc"
    )


def test_committed_code_equals_a_fresh_generation(tmp_path: Path) -> None:
    fresh = tmp_path / "api"
    subprocess.run(
        [sys.executable, str(CLIENT / "generate.py"), "--output", str(fresh)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert tree(fresh) == tree(COMMITTED), "run `make client`"
    files = tree(fresh)
    _match, mismatch, errors = filecmp.cmpfiles(fresh, COMMITTED, files, shallow=False)
    assert (mismatch, errors) == ([], []), f"stale {mismatch + errors}: run `make client`"


def test_every_public_proto_is_in_the_client() -> None:
    protos = {p.stem for p in (ROOT / "proto" / "gateway" / "api" / "v1").glob("*.proto")}
    modules = {p.name.removesuffix("_pb2.py") for p in (COMMITTED / "v1").glob("*_pb2.py")}
    assert modules == protos


def test_the_client_imports_nothing_of_the_gateway() -> None:
    for path in (CLIENT / "src").rglob("*.py*"):
        for line in path.read_text(encoding="utf-8").splitlines():
            assert not line.lstrip().startswith(("from gateway", "import gateway")), path


def test_both_copies_register_each_file_once_under_its_proto_name() -> None:
    # Same file name and content: the pool holds one file, so one set of descriptors and
    # classes serves both copies, and the wire names stay gateway.api.v1.*.
    assert application_pb2.DESCRIPTOR is gateway_application_pb2.DESCRIPTOR
    assert catalog_pb2.DESCRIPTOR is gateway_catalog_pb2.DESCRIPTOR
    assert application_pb2.DESCRIPTOR.name == "gateway/api/v1/application.proto"
    assert license_pb2.DESCRIPTOR.services_by_name["LicenseService"].full_name == (
        "gateway.api.v1.LicenseService"
    )
    sent = application_pb2.Application(
        name="applications/x", state=application_pb2.APPLICATION_STATE_QUEUED
    )
    read = gateway_application_pb2.Application.FromString(sent.SerializeToString())
    assert read.state == gateway_application_pb2.APPLICATION_STATE_QUEUED
