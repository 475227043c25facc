"""Contract guards: every RPC implemented, generated code in sync, the proto lint-clean."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import FileDescriptor

from gateway.api.v1 import application_pb2, catalog_pb2, license_pb2, region_pb2
from gateway.applications.service import ApplicationServicer
from gateway.catalog.service import CatalogServicer
from gateway.licenses.service import LicenseServicer
from region_stubs.admin.v1 import admin_pb2
from region_stubs.server import AdminServicer, RegionServicer

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

IMPLEMENTATIONS: list[tuple[FileDescriptor, str, type]] = [
    (catalog_pb2.DESCRIPTOR, "CatalogService", CatalogServicer),
    (application_pb2.DESCRIPTOR, "ApplicationService", ApplicationServicer),
    (license_pb2.DESCRIPTOR, "LicenseService", LicenseServicer),
    (region_pb2.DESCRIPTOR, "RegionService", RegionServicer),
    (admin_pb2.DESCRIPTOR, "RegionAdminService", AdminServicer),
]


@pytest.mark.parametrize(
    ("descriptor", "service", "servicer"), IMPLEMENTATIONS, ids=[i[1] for i in IMPLEMENTATIONS]
)
def test_every_rpc_has_an_implementation(
    descriptor: FileDescriptor, service: str, servicer: type
) -> None:
    methods = descriptor.services_by_name[service].methods_by_name
    assert methods, f"{service} has no methods"
    missing = [name for name in methods if name not in vars(servicer)]
    assert missing == [], f"{servicer.__name__} does not implement {missing}"


def test_generated_code_is_in_sync(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--mypy_out={tmp_path}",
            f"--mypy_grpc_out={tmp_path}",
            f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
            *protos,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    for package in ("gateway/api/v1", "region_stubs/admin/v1"):
        generated = sorted(p.name for p in (tmp_path / package).glob("*_pb2*"))
        committed = sorted(p.name for p in (ROOT / package).glob("*_pb2*"))
        assert generated == committed, f"{package}: run `make proto`"
        _match, mismatch, errors = filecmp.cmpfiles(
            tmp_path / package, ROOT / package, generated, shallow=False
        )
        assert (mismatch, errors) == ([], []), f"{package}: stale {mismatch + errors}: make proto"


def test_buf_lint_is_clean() -> None:
    result = subprocess.run(
        [str(BIN / "buf"), "lint"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
