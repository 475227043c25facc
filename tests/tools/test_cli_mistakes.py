"""Ordinary mistakes, made as a user makes them: the real `tongban` command in a subprocess,
against a real mTLS gateway. Each ends as one line saying what is wrong and what to do, with
its exit code (`tools.exits`), no traceback and no gRPC core log lines."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import STANDARDS, World, start_world
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.api.v1 import application_pb2 as pb
from gateway.security.pki import generate_dev_pki
from gateway.tools import exits
from gateway.tools.cli import build_parser

TONGBAN = [sys.executable, "-m", "gateway.tools"]  # what the `tongban` script runs
REGIONS = ("440000", "510000")


async def tongban(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Runs `tongban` in `cwd` with none of the caller's TONGBAN_* or GRPC_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TONGBAN_", "GRPC_"))}
    process = await asyncio.create_subprocess_exec(
        *TONGBAN,
        *args,
        cwd=cwd,
        env={**clean, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def one_line(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """The exit code and the only line on stderr (nothing on stdout, no traceback)."""
    code, out, err = await tongban(*args, cwd=cwd, env=env)
    assert "Traceback" not in err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    return code, lines[0]


@pytest.fixture
async def federation(tmp_path: Path) -> AsyncIterator[World]:
    """A gateway with two provinces over mTLS; its data directory is `tmp_path/fed/data`."""
    async with start_world(tmp_path / "fed" / "data", REGIONS, tls=True) as world:
        yield world


def apply(gateway: str, origin: str = "440000") -> list[str]:
    return [
        "apply",
        "--gateway",
        gateway,
        "--origin",
        origin,
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def held_port() -> socket.socket:
    """A port held by a listener that allows sharing, as gRPC servers do by default."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


# -- the certificate to present --------------------------------------------------------------


async def test_the_pki_is_found_from_wherever_the_command_runs(
    federation: World, tmp_path: Path
) -> None:
    inside = tmp_path / "fed" / "work" / "deeper"
    inside.mkdir(parents=True)
    code, out, err = await tongban(*apply(federation.gateway.address), "--json", cwd=inside)
    assert code == exits.OK, err
    assert json.loads(out)["state"] == "APPLICATION_STATE_DELIVERED"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data = {"TONGBAN_DATA_DIR": str(tmp_path / "fed" / "data")}
    code, out, err = await tongban(*apply(federation.gateway.address), cwd=elsewhere, env=data)
    assert code == exits.OK, err


async def test_no_certificate_for_the_identity_stops_and_never_calls_in_plaintext(
    federation: World, tmp_path: Path
) -> None:
    clients = tmp_path / "fed" / "data" / "pki" / "clients"
    inside = tmp_path / "fed"
    code, line = await one_line(*apply(federation.gateway.address, origin="44000"), cwd=inside)
    assert (code, line) == (
        exits.USAGE,
        f"tongban: no certificate for region/44000 in {clients} (it holds ops/noc, "
        "region/440000, region/510000, standards/national-standards-body): check --origin, or "
        "point elsewhere with --pki-dir, TONGBAN_DATA_DIR or --ca/--cert/--key",
    )
    status = ["status", "some-id", "--gateway", federation.gateway.address, "--as", "ops/ops"]
    code, line = await one_line(*status, cwd=inside)
    assert code == exits.USAGE
    assert line.startswith(f"tongban: no certificate for ops/ops in {clients} (")
    assert "check --as" in line

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, line = await one_line(*apply(federation.gateway.address), cwd=elsewhere)
    assert (code, line) == (
        exits.USAGE,
        f"tongban: no federation PKI: no data/pki/ca.pem in {elsewhere} or any directory above "
        "it, and TONGBAN_DATA_DIR is not set; run where `tongban up` keeps its data, set "
        "TONGBAN_DATA_DIR, or give --pki-dir or --ca/--cert/--key (--insecure: plaintext, for "
        "a gateway that serves it)",
    )
    empty = {"TONGBAN_DATA_DIR": str(elsewhere)}
    code, line = await one_line(*apply(federation.gateway.address), cwd=elsewhere, env=empty)
    assert (code, line) == (
        exits.USAGE,
        f"tongban: TONGBAN_DATA_DIR={elsewhere}: no PKI in {elsewhere / 'pki'} (no ca.pem): run "
        "`tongban up` or `tongban certs` with that data directory, or give --pki-dir or "
        "--ca/--cert/--key",
    )
    # Nothing reached the gateway, in plaintext or otherwise.
    listed = await federation.applications.ListApplications(
        pb.ListApplicationsRequest(region_code="440000")
    )
    assert list(listed.applications) == []


def issue(
    ca_dir: Path, out: Path, *, not_before: datetime, not_after: datetime
) -> tuple[Path, Path]:
    """A region/440000 client certificate from the CA in `ca_dir`, valid as given."""
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "region-440000")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("spiffe://tongban/region/440000")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "cert.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return out / "cert.pem", out / "cert.key"


async def test_certificate_mistakes_are_named_before_dialling(
    federation: World, tmp_path: Path
) -> None:
    pki = tmp_path / "fed" / "data" / "pki"
    ca, clients = pki / "ca.pem", pki / "clients"
    other = generate_dev_pki(
        tmp_path / "other", regions=["440000"], standards_bodies=[], ops=["ops"]
    )
    now = datetime.now(UTC)
    expired_cert, expired_key = issue(
        pki,
        tmp_path / "expired",
        not_before=now - timedelta(days=40),
        not_after=now - timedelta(days=10),
    )

    def files(cert: Path, key: Path, authority: Path = ca) -> list[str]:
        return ["--cert", str(cert), "--key", str(key), "--ca", str(authority)]

    own_cert, own_key = clients / "region-440000.pem", clients / "region-440000.key"
    cases = [
        (
            files(other.regions["440000"].cert, other.regions["440000"].key),
            f"tongban: {other.regions['440000'].cert} (issued by Tongban Development CA) does "
            f"not chain to the CA in {ca} (validation failed: candidates exhausted: signature "
            "does not match): the gateway would refuse it; present a certificate of this "
            "federation, or give the CA that issued it with --ca",
        ),
        (
            files(own_cert, clients / "region-510000.key"),
            f"tongban: {clients / 'region-510000.key'} is not the key of {own_cert}: give the "
            "key made with that certificate (the .key file beside it)",
        ),
        (
            files(expired_cert, expired_key),
            f"tongban: {expired_cert} expired on {now - timedelta(days=10):%Y-%m-%d %H:%M} UTC: "
            "renew it (`tongban certs` renews the development PKI, as `tongban up` does at "
            "start) or ask its CA for a new one",
        ),
        (
            files(own_cert, own_cert),
            f"tongban: {own_cert} holds a certificate, not a private key: give the key made "
            "with region-440000.pem (the .key file beside it)",
        ),
        (
            files(own_key, own_key),
            f"tongban: {own_key} holds no PEM certificate",
        ),
        (
            ["--cert", str(own_cert)],
            "tongban: --cert, --key and --ca go together",
        ),
    ]
    for flags, expected in cases:
        code, line = await one_line(*apply(federation.gateway.address), *flags, cwd=tmp_path)
        assert (code, line) == (exits.USAGE, expected)


async def test_what_the_gateway_or_the_network_said_is_told_apart(
    federation: World, tmp_path: Path
) -> None:
    pki = tmp_path / "fed" / "data" / "pki"
    address = federation.gateway.address
    other = generate_dev_pki(
        tmp_path / "other", regions=["440000"], standards_bodies=[], ops=["ops"]
    )
    foreign = other.regions["440000"]

    # A certificate of another CA, with a CA file that trusts both: the gateway ends the handshake.
    both = tmp_path / "both.pem"
    both.write_bytes((pki / "ca.pem").read_bytes() + other.ca_cert.read_bytes())
    flags = ["--cert", str(foreign.cert), "--key", str(foreign.key), "--ca", str(both)]
    code, line = await one_line(*apply(address), *flags, cwd=tmp_path)
    assert (code, line) == (
        exits.UNREACHABLE,
        f"tongban: the gateway at {address} ended the TLS handshake: it does not accept "
        f"{foreign.cert} (issued by Tongban Development CA); present a certificate from the CA "
        "it trusts (its TONGBAN_TLS_CA)",
    )

    # Trusting another federation's CA: the gateway's own certificate does not verify.
    flags = ["--cert", str(foreign.cert), "--key", str(foreign.key), "--ca", str(other.ca_cert)]
    code, line = await one_line(*apply(address), *flags, cwd=tmp_path)
    assert (code, line) == (
        exits.UNREACHABLE,
        f"tongban: the gateway at {address} presents a certificate that does not chain to the "
        f"CA in {other.ca_cert}: give the CA of its federation (--ca, --pki-dir or "
        "TONGBAN_DATA_DIR)",
    )

    code, line = await one_line(*apply(address), "--insecure", cwd=tmp_path)
    assert (code, line) == (
        exits.UNREACHABLE,
        f"tongban: the gateway at {address} closed the plaintext connection: it serves mTLS (as "
        "`tongban up` does), so drop --insecure and present a certificate",
    )

    nobody = f"127.0.0.1:{free_port()}"
    code, line = await one_line(*apply(nobody), "--pki-dir", str(pki), cwd=tmp_path)
    assert (code, line) == (
        exits.UNREACHABLE,
        f"tongban: nothing listens at {nobody}: is the gateway running? (`tongban up` starts "
        "one; --gateway HOST:PORT names another)",
    )

    # The gateway answered: its status is printed, and the code says it refused.
    clients = pki / "clients"
    sichuan = ["--cert", str(clients / "region-510000.pem"), "--key"]
    sichuan += [str(clients / "region-510000.key"), "--ca", str(pki / "ca.pem")]
    code, _, err = await tongban(*apply(address), *sichuan, cwd=tmp_path)
    assert code == exits.REFUSED, err
    assert "Traceback" not in err
    assert "NOT_OWN_REGION" in err

    async with start_world(tmp_path / "plain") as plaintext:
        code, line = await one_line(
            *apply(plaintext.gateway.address), "--pki-dir", str(pki), cwd=tmp_path
        )
    assert (code, line) == (
        exits.UNREACHABLE,
        f"tongban: the gateway at {plaintext.gateway.address} does not speak TLS (a plaintext "
        "development gateway?): add --insecure to call it in plaintext",
    )


async def test_grpc_core_lines_appear_only_when_asked_for(
    federation: World, tmp_path: Path
) -> None:
    other = generate_dev_pki(
        tmp_path / "other", regions=["440000"], standards_bodies=[], ops=["ops"]
    )
    foreign = other.regions["440000"]
    flags = ["--cert", str(foreign.cert), "--key", str(foreign.key), "--ca", str(other.ca_cert)]
    call = apply(federation.gateway.address)
    code, line = await one_line(*call, *flags, cwd=tmp_path)
    assert code == exits.UNREACHABLE
    assert "CERTIFICATE_VERIFY_FAILED" not in line
    for asked in (["--log-level", "debug"], ["--log-level=DEBUG"]):
        code, _, err = await tongban(*asked, *call, *flags, cwd=tmp_path)
        assert code == exits.UNREACHABLE
        assert "CERTIFICATE_VERIFY_FAILED" in err  # gRPC core's handshake line
    code, _, err = await tongban(*call, *flags, cwd=tmp_path, env={"GRPC_VERBOSITY": "INFO"})
    assert code == exits.UNREACHABLE
    assert "CERTIFICATE_VERIFY_FAILED" in err


# -- other ordinary mistakes -------------------------------------------------------------------


async def test_a_busy_port_under_up_is_one_line_naming_it(tmp_path: Path) -> None:
    holder = held_port()
    port = str(holder.getsockname()[1])
    up = ["up", "--data-dir", str(tmp_path / "data"), "--standards-dir", str(STANDARDS)]
    up += ["--regions", "440000"]
    try:
        code, line = await one_line(
            *up, "--port", "0", "--metrics-port", "-1", "--stub-base-port", port, cwd=tmp_path
        )
        assert (code, line) == (
            exits.USAGE,
            f"tongban: port {port} on 127.0.0.1, region stub 440000's, is taken: stop what "
            "holds it, or choose another --stub-base-port (0: any free ports)",
        )
        # The gateway's own ports: it logs its start (INFO) before it finds one taken.
        for flag, what in (("--metrics-port", "metrics port"), ("--port", "port")):
            ports = {"--port": "0", "--stub-base-port": "0", "--metrics-port": "-1", flag: port}
            code, _, err = await tongban(*up, *(x for f in ports.items() for x in f), cwd=tmp_path)
            assert code == exits.USAGE, err
            assert "Traceback" not in err
            assert not re.search(r"^[DIWE]\d{4} ", err, re.MULTILINE), err  # no gRPC core lines
            assert [line for line in err.splitlines() if line.startswith("tongban")] == [
                f"tongban: PORT_IN_USE: {what} {port} on 127.0.0.1 is taken (another gateway?): "
                f"stop it or choose another {flag}"
            ]
    finally:
        holder.close()


async def test_a_public_key_where_the_private_key_belongs(tmp_path: Path) -> None:
    code, out, _ = await tongban(
        "catalog", "keygen", "--name", "body", "--out-dir", str(tmp_path), cwd=tmp_path
    )
    assert code == exits.OK
    public = json.loads(out)["public_key"]
    sign = ["catalog", "sign", str(STANDARDS / "catalog" / "2025.2.json"), "--out", "x.jws"]
    code, line = await one_line(
        *sign, "--key", public, "--standards-dir", str(STANDARDS), cwd=tmp_path
    )
    assert (code, line) == (
        exits.USAGE,
        f"tongban: {public} holds a public key, not a private key: give the NAME.key.pem that "
        "`tongban catalog keygen` made",
    )
    assert not (tmp_path / "x.jws").exists()


async def test_a_malformed_expect_head(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text("", encoding="utf-8")
    for head in ("12", "x:abc", f"audit.jsonl=12:{'0' * 63}", "-1:" + "0" * 64):
        code, line = await one_line(
            "audit", "verify", str(log), f"--expect-head={head}", cwd=tmp_path
        )
        assert (code, line) == (
            exits.USAGE,
            f"tongban: --expect-head {head}: a head is SEQ:HASH as `tongban audit verify` "
            "prints it (e.g. 42:9f86d081…, 64 hex digits), with LOG= before it among several "
            "logs",
        )
    code, out, err = await tongban(
        "audit", "verify", str(log), "--expect-head", f"0:{'0' * 64}", cwd=tmp_path
    )
    assert code == exits.FAILED, err  # well formed: read, and found not to be this log's
    assert json.loads(out)["ok"] is False


async def test_outside_the_repository_the_standards_data_is_asked_for(tmp_path: Path) -> None:
    listing = str(STANDARDS / "implementations" / "440000.json")
    for command in (["catalog", "validate", listing], ["up", "--port", "0"], ["demo"]):
        code, line = await one_line(*command, cwd=tmp_path)
        assert (code, line) == (
            exits.USAGE,
            f"tongban: no standards data: no standards/regions.json in {tmp_path} or any "
            "directory above it; run inside the repository, or give --standards-dir or "
            "TONGBAN_STANDARDS_DIR",
        )
    code, line = await one_line(
        "catalog", "validate", listing, cwd=tmp_path, env={"TONGBAN_STANDARDS_DIR": str(tmp_path)}
    )
    assert (code, line) == (
        exits.USAGE,
        f"tongban: no standards data in {tmp_path} (no regions.json), named by "
        "TONGBAN_STANDARDS_DIR: give the repository's standards/ directory with "
        "--standards-dir or TONGBAN_STANDARDS_DIR",
    )
    # A list the catalog in force routes (440000's names a matter 2026.1 no longer has).
    sichuan = str(STANDARDS / "implementations" / "510000.json")
    code, out, err = await tongban(
        "catalog", "validate", sichuan, cwd=tmp_path, env={"TONGBAN_STANDARDS_DIR": str(STANDARDS)}
    )
    assert code == exits.OK, err
    assert "0 error(s)" in out
    code, out, err = await tongban("catalog", "validate", sichuan, cwd=STANDARDS / "catalog")
    assert code == exits.OK, err  # found above the working directory


# -- help --------------------------------------------------------------------------------------


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every runnable command's parser, by its words (`region-stub` answers its own --help)."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        return {path: parser}
    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for name, child in groups[0].choices.items():
        if name != "region-stub":
            found.update(commands(child, (*path, name)))
    return found


async def test_help_documents_the_exit_codes_and_each_command_has_an_example(
    tmp_path: Path,
) -> None:
    code, out, _ = await tongban("--help", cwd=tmp_path)
    assert code == exits.OK
    assert exits.EXIT_CODES_HELP in out
    for line in ("  3  refused by the gateway", "  4  the gateway was not reached"):
        assert line in out

    found = commands(build_parser())
    assert len(found) >= 13
    for path, parser in found.items():
        assert "\nexample:\n  tongban " + " ".join(path) in parser.format_help(), path
    words = {path: " ".join(parser.format_help().split()) for path, parser in found.items()}
    assert "the gateway's gRPC port; 0: any free port (default: 50051)" in words[("up",)]
    assert "seconds to wait for the gateway's answer (default: 10.0)" in words[("apply",)]
    assert "Prometheus /metrics HTTP port; -1: none (default: 9464)" in words[("gateway",)]
