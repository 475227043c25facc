"""Contract guards: every RPC implemented, generated code in sync, the proto lint-clean, and
every file's options for other languages fixed and valid."""

from __future__ import annotations

import filecmp
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorSet

from gateway.api.v1 import application_pb2, catalog_pb2, license_pb2, region_pb2
from gateway.applications.service import ApplicationServicer
from gateway.catalog.service import CatalogServicer
from gateway.licenses.service import LicenseServicer
from region_stubs.admin.v1 import admin_pb2
from region_stubs.server import AdminServicer, RegionServicer

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROTO_DEPS = Path(sys.prefix) / "proto-deps"
"""The Google protos linked from the installed googleapis-common-protos (`make install`)."""
DESCRIPTORS = ROOT / "gateway" / "api" / "v1" / "descriptors.binpb"

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
            f"-I{PROTO_DEPS}",
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


def test_descriptor_set_is_in_sync(tmp_path: Path) -> None:
    public = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "proto/gateway/api/v1").glob("*.proto")
    )
    out = tmp_path / "descriptors.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"-I{PROTO_DEPS}",
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *public,
            "google/rpc/status.proto",
            "google/rpc/error_details.proto",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == DESCRIPTORS.read_bytes(), "stale descriptor set: make proto"


def test_descriptor_set_holds_the_public_services_and_the_error_details() -> None:
    files = FileDescriptorSet.FromString(DESCRIPTORS.read_bytes()).file
    names = {f.name for f in files}
    assert {"google/api/annotations.proto", "google/rpc/error_details.proto"} <= names
    services = {f"{f.package}.{s.name}" for f in files for s in f.service}
    assert {
        "gateway.api.v1.ApplicationService",
        "gateway.api.v1.CatalogService",
        "gateway.api.v1.LicenseService",
    } <= services


@pytest.mark.parametrize("service", ["ApplicationService", "CatalogService", "LicenseService"])
def test_every_public_rpc_has_an_http_rule(service: str) -> None:
    descriptor = {
        "ApplicationService": application_pb2.DESCRIPTOR,
        "CatalogService": catalog_pb2.DESCRIPTOR,
        "LicenseService": license_pb2.DESCRIPTOR,
    }[service].services_by_name[service]
    missing = [
        m.name for m in descriptor.methods if not m.GetOptions().HasExtension(annotations_pb2.http)
    ]
    assert missing == [], f"{service}: no google.api.http rule for {missing}"


def test_buf_lint_is_clean() -> None:
    result = subprocess.run(
        [str(BIN / "buf"), "lint"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


LANGUAGE_OPTIONS = {
    "gateway.api.v1": {
        "java_package": "cn.gov.tongban.gateway.api.v1",
        "go_package": "tongban.gov.cn/go/gateway/api/v1;gatewayv1",
        "csharp_namespace": "Tongban.Gateway.Api.V1",
    },
    "region_stubs.admin.v1": {
        "java_package": "cn.gov.tongban.region_stubs.admin.v1",
        "go_package": "tongban.gov.cn/go/region_stubs/admin/v1;adminv1",
        "csharp_namespace": "Tongban.RegionStubs.Admin.V1",
    },
}
"""Each package's options for other languages. They name generated code in every platform's
build, so they never change: this table keeps buf's FILE_SAME_* promise (see buf.yaml)."""

PROTO_NAMES = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
PROTO_FILES: list[FileDescriptor] = [
    importlib.import_module(name.removesuffix(".proto").replace("/", ".") + "_pb2").DESCRIPTOR
    for name in PROTO_NAMES
]
"""Every file under proto/, as its generated module registered it."""


def _java_outer_classname(file: FileDescriptor) -> str:
    stem = Path(file.name).stem
    return "".join(part.capitalize() for part in stem.split("_")) + "Proto"


@pytest.mark.parametrize("file", PROTO_FILES, ids=[f.name for f in PROTO_FILES])
def test_language_options_are_the_packages_own(file: FileDescriptor) -> None:
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    options = proto.options
    expected = LANGUAGE_OPTIONS.get(file.package)
    assert expected is not None, f"{file.name}: add package {file.package} to LANGUAGE_OPTIONS"
    assert {name: getattr(options, name) for name in expected} == expected
    assert options.java_multiple_files
    assert options.java_outer_classname == _java_outer_classname(file)


def _expected_java_classes(file: FileDescriptor) -> set[str]:
    names = {_java_outer_classname(file)}
    for message in file.message_types_by_name:
        names |= {message, f"{message}OrBuilder"}
    names |= set(file.enum_types_by_name)
    base = file.GetOptions().java_package.replace(".", "/")
    return {f"{base}/{name}.java" for name in names}


def test_protoc_generates_java_classes_under_each_java_package(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto").rglob("*.proto"))
    result = subprocess.run(
        [
            str(BIN / "protoc"),
            "-Iproto",
            f"-I{ROOT / '.venv' / 'proto-deps'}",  # google/api, linked by `make install`
            f"--java_out={tmp_path}",
            *protos,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    generated = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.java")}
    expected = set().union(*(_expected_java_classes(f) for f in PROTO_FILES))
    assert expected <= generated, sorted(expected - generated)
    packages = {str(Path(name).parent) for name in generated}
    assert packages == {
        options["java_package"].replace(".", "/") for options in LANGUAGE_OPTIONS.values()
    }


def test_buf_gen_template_generates_java_with_protocs_own_generator(tmp_path: Path) -> None:
    """The root buf.gen.yaml, reduced to its protoc built-in plugins (the others are a
    platform's own executables), generates the public API's Java classes."""
    template = yaml.safe_load((ROOT / "buf.gen.yaml").read_text(encoding="utf-8"))
    assert not any("remote" in plugin for plugin in template["plugins"]), "local plugins only"
    template["plugins"] = [p for p in template["plugins"] if "protoc_builtin" in p]
    assert [p["protoc_builtin"] for p in template["plugins"]] == ["java"]
    reduced = tmp_path / "buf.gen.yaml"
    reduced.write_text(yaml.safe_dump(template), encoding="utf-8")
    out = tmp_path / "out"
    result = subprocess.run(
        [str(BIN / "buf"), "generate", "--template", str(reduced), "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    java = out / template["plugins"][0]["out"]
    generated = {str(p.relative_to(java)) for p in java.rglob("*.java")}
    public = [f for f in PROTO_FILES if f.package == "gateway.api.v1"]
    expected = set().union(*(_expected_java_classes(f) for f in public))
    assert expected <= generated, sorted(expected - generated)
