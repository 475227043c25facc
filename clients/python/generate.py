"""Generates `tongban_client.api.v1` from `proto/gateway/api/v1` (`make client`; `make proto`
runs it too).

The client carries its own copy of the generated code, so that it installs without the
gateway. Each copy keeps the proto file names (`gateway/api/v1/*.proto`) and the proto package
(`gateway.api.v1`), hence the wire names and the registrations in protobuf's descriptor pool:
a process that imports the gateway's copy and the client's registers each file once, with the
same content, and both copies share one set of descriptors and message classes. Only the
Python import path differs, so exactly two things are rewritten in protoc's output:

- `from gateway.api.v1 import x_pb2 …` (one generated module importing another) becomes
  `from . import x_pb2 …`;
- the module name given to protobuf's builder (`'gateway.api.v1.x_pb2'`, which becomes the
  classes' `__module__`, as pickle reads it) becomes `'tongban_client.api.v1.x_pb2'`.

Anything else naming a `gateway` module fails the generation rather than ship an import the
client cannot satisfy. The output is the whole `api` package, `__init__.py` files included:
`tests/clients/test_generated.py` regenerates it and fails on any difference.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CLIENT = Path(__file__).resolve().parent
ROOT = CLIENT.parent.parent
PROTO_DIR = "gateway/api/v1"
OUTPUT = CLIENT / "src" / "tongban_client" / "api"

INIT = {
    "__init__.py": '"""Generated gRPC code of the public API. Do not edit: run `make client`."""\n',
    "v1/__init__.py": (
        '"""Generated from proto/gateway/api/v1 (proto package `gateway.api.v1`). Do not edit:'
        ' run\n`make client`."""\n'
    ),
}

_SIBLING_IMPORT = re.compile(r"^from gateway\.api\.v1 import ", re.MULTILINE)
_MODULE_NAME = re.compile(
    r"(_builder\.BuildTopDescriptorsAndMessages\(DESCRIPTOR, )'gateway\.api\.v1\."
)
_GATEWAY_MODULE = re.compile(
    r"^\s*(from|import)\s+gateway\b|'gateway\.api\.v1\.\w+_pb2'", re.MULTILINE
)


def rewrite(text: str, name: str) -> str:
    """One generated file with its import path moved under `tongban_client.api.v1`."""
    text = _SIBLING_IMPORT.sub("from . import ", text)
    text = _MODULE_NAME.sub(r"\1'tongban_client.api.v1.", text)
    if _GATEWAY_MODULE.search(text):
        raise SystemExit(f"{name}: a reference to the gateway's modules is left; extend rewrite()")
    return text


def generate(output: Path) -> None:
    """Writes the `api` package into `output`, replacing what it held."""
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto" / PROTO_DIR).glob("*.proto"))
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                "-Iproto",
                # google/api/annotations.proto and friends, linked by `make install`
                f"-I{ROOT / '.venv' / 'proto-deps'}",
                f"--python_out={scratch}",
                f"--grpc_python_out={scratch}",
                f"--mypy_out={scratch}",
                f"--mypy_grpc_out={scratch}",
                f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
                f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
                *protos,
            ],
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise SystemExit(f"protoc failed:\n{result.stderr}")
        if output.exists():
            shutil.rmtree(output)
        (output / "v1").mkdir(parents=True)
        for relative, text in INIT.items():
            (output / relative).write_text(text, encoding="utf-8")
        for generated in sorted((Path(scratch) / PROTO_DIR).glob("*_pb2*")):
            text = rewrite(generated.read_text(encoding="utf-8"), generated.name)
            (output / "v1" / generated.name).write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the api package to write")
    generate(parser.parse_args().output)


if __name__ == "__main__":
    main()
