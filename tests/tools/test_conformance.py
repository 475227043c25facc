"""The conformance kit against real region stub processes.

The stub is the reference implementation: every case passes against it, over mTLS with the
gateway side served and in plaintext. Each of its `--break` switches breaks one rule, and the
kit must fail exactly the case of that rule (a case that relies on it is skipped, saying so);
that is what shows that no case passes whatever the province does.

Every stub of the module is started at once, before the first test, and serves them all.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.security.pki import PkiLayout, generate_dev_pki
from gateway.tools import cli, exits
from gateway.tools.conformance.cases import CASES
from gateway.tools.conformance.probes import KitOptions, KitTls
from gateway.tools.conformance.results import CaseResult, Outcome
from gateway.tools.conformance.runner import run_kit
from region_stubs.breaks import Break

ROOT = Path(__file__).resolve().parents[2]
REGION = "440000"
LOCAL_CODE = "11440000MBDCGK306L2000117112000"
TONGBAN = [sys.executable, "-m", "gateway.tools"]
QUICK_FLAGS = ["--deadline-grace", "0.2", "--deadline-settle", "0.8", "--report-timeout", "10"]
"""Shorter waits than a province's CI would use: the stub settles in milliseconds."""

# Which case each switch must fail, and extra stub flags it runs with.
BREAKS: list[tuple[Break, str, tuple[str, ...]]] = [
    (Break.REPLAY_NOT_DUPLICATE, "delivery.replay", ()),
    (Break.RACY_DUPLICATES, "delivery.concurrent-duplicates", ()),
    (Break.ACCEPT_CHANGED_REPLAY, "delivery.changed-replay", ()),
    (Break.INTERNAL_ON_MALFORMED, "delivery.malformed", ()),
    # A fast province that does not look at the deadline: it records what it receives.
    (Break.IGNORE_DEADLINE, "delivery.deadline", ()),
    # A slow one that does not stop when the caller gives up: its cases appear later.
    (Break.IGNORE_DEADLINE, "delivery.deadline", ("--latency-ms", "500")),
    (Break.STATUS_WITHOUT_RECEIPT, "status.known", ()),
    (Break.UNKNOWN_STATUS_OK, "status.unknown", ()),
    (Break.PRIVATE_JWK, "licenses.keys", ()),
    (Break.STATUS_LIST_UNCOMPRESSED, "licenses.status-list", ()),
    (Break.STATUS_LIST_FOREIGN_KEY, "licenses.status-list-signature", ()),
    (Break.REPORT_WITHOUT_EVENT_ID, "reports.accepted-by-gateway", ()),
    (Break.WITHDRAW_NOOP, "withdrawal", ()),
    (Break.FETCH_INTERNAL_ON_MALFORMED, "licenses.fetch-refusals", ()),
    (Break.ADMIT_ANY_CLIENT, "security.gateway-only", ()),
]
BREAK_IDS = [" ".join([b.value, *f]) for b, _, f in BREAKS]


@dataclass
class Province:
    """A stub process serving the module's tests."""

    address: str
    gateway_port: int | None
    """Where it reports to: the kit's gateway side must listen there."""
    process: subprocess.Popen[bytes]


def free_port() -> int:
    """A port nobody listens on now, for the gateway side the stub must be told of up front."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stub_command(data_dir: Path, pki: PkiLayout | None, gateway_port: int | None) -> list[str]:
    """A stub on port 0 that accepts every new case at once (completing it 5 s later) and
    reports it, if told where."""
    command = [sys.executable, "-m", "region_stubs", "--region", REGION, "--port", "0"]
    command += ["--data-dir", str(data_dir), "--decide", "*=complete:5s", "--grace", "0.2"]
    if gateway_port is not None:
        command += ["--gateway", f"127.0.0.1:{gateway_port}"]
    if pki is not None:
        command += ["--tls-ca", str(pki.ca_cert)]
        command += ["--tls-cert", str(pki.region_servers[REGION].cert)]
        command += ["--tls-key", str(pki.region_servers[REGION].key)]
        command += ["--client-cert", str(pki.regions[REGION].cert)]
        command += ["--client-key", str(pki.regions[REGION].key)]
    return command


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return generate_dev_pki(
        tmp_path_factory.mktemp("pki"), regions=[REGION], standards_bodies=[], ops=[]
    )


@pytest.fixture(scope="module")
def provinces(
    tmp_path_factory: pytest.TempPathFactory, pki: PkiLayout
) -> Iterator[dict[str, Province]]:
    """The reference stub over mTLS ("reference") and in plaintext ("plaintext"), one stub per
    broken switch (by its id in BREAK_IDS), and one with `private-jwk` that reports nowhere
    ("unreported"), all started at once."""
    wanted: dict[str, tuple[PkiLayout | None, list[str], bool]] = {
        "reference": (pki, [], True),
        "plaintext": (None, [], True),
        "unreported": (pki, ["--break", Break.PRIVATE_JWK.value], False),
    }
    for name, (switch, _, extra) in zip(BREAK_IDS, BREAKS, strict=True):
        wanted[name] = (pki, ["--break", switch.value, *extra], True)
    root = tmp_path_factory.mktemp("provinces")
    started: dict[str, tuple[subprocess.Popen[bytes], int | None, Path]] = {}
    try:
        for n, (name, (layout, flags, reports)) in enumerate(wanted.items()):
            port = free_port() if reports else None
            log = root / f"stub-{n}.log"
            with log.open("wb") as err:
                process = subprocess.Popen(
                    [*stub_command(root / f"stub-{n}", layout, port), *flags],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=err,
                )
            started[name] = (process, port, log)
        ready = {}
        for name, (process, port, log) in started.items():
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line, f"stub {name} exited before listening:\n{log.read_text()[-3000:]}"
            ready[name] = Province(json.loads(line)["address"], port, process)
        yield ready
    finally:
        for process, _, _ in started.values():
            process.terminate()
        for process, _, _ in started.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def mtls_options(province: Province, pki: PkiLayout) -> KitOptions:
    assert province.gateway_port is not None
    return KitOptions(
        target=province.address,
        region=REGION,
        local_code=LOCAL_CODE,
        tls=KitTls(
            pki.ca_cert,
            pki.gateway.cert,
            pki.gateway.key,
            pki.regions[REGION].cert,
            pki.regions[REGION].key,
        ),
        gateway_side=("127.0.0.1", province.gateway_port),
        deadline_grace=0.2,
        deadline_settle=0.8,
        report_timeout=10.0,
    )


def by_outcome(results: Sequence[CaseResult]) -> dict[Outcome, set[str]]:
    return {o: {r.name for r in results if r.outcome is o} for o in Outcome}


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *TONGBAN,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_every_case_has_a_switch_that_fails_it() -> None:
    assert {case for _, case, _ in BREAKS} == {case.name for case in CASES}
    assert {b for b, _, _ in BREAKS} == set(Break)


async def test_the_reference_stub_passes_every_case_over_mtls(
    tmp_path: Path, pki: PkiLayout, provinces: dict[str, Province]
) -> None:
    province = provinces["reference"]
    junit = tmp_path / "out" / "conformance.xml"
    code, out, err = await run_cli(
        "conformance",
        province.address,
        "--region",
        REGION,
        "--pki-dir",
        str(pki.root),
        "--gateway-side",
        str(province.gateway_port),
        "--junit",
        str(junit),
        *QUICK_FLAGS,
    )
    assert code == exits.OK, out + err
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["PASS", c.name] for c in CASES]
    assert all(" | sent: " in line and " | got: " in line for line in lines[:-1])
    assert lines[-1].startswith(
        f"region {REGION} at {province.address} conforms: {len(CASES)} passed, 0 failed"
    )
    assert "110105199003071239" not in out  # the made-up applicant's number is never shown

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("14", "0", "0")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [c.name for c in CASES]
    assert all(c.find("failure") is None for c in cases)
    assert all("sent: " in (c.findtext("system-out") or "") for c in cases)


async def test_the_reference_stub_passes_in_plaintext_and_the_mtls_case_is_skipped(
    provinces: dict[str, Province],
) -> None:
    province = provinces["plaintext"]
    code, out, err = await run_cli(
        "conformance",
        province.address,
        "--region",
        REGION,
        "--plaintext",
        "--gateway-side",
        str(province.gateway_port),
        *QUICK_FLAGS,
    )
    assert code == exits.OK, out + err
    assert "SKIP security.gateway-only: plaintext" in out
    assert "conforms in the cases run: 13 passed, 0 failed, 1 skipped" in out.splitlines()[-1]


@pytest.mark.parametrize(
    ("stub", "case"),
    [(i, c) for i, (_, c, _) in zip(BREAK_IDS, BREAKS, strict=True)],
    ids=BREAK_IDS,
)
async def test_each_broken_rule_fails_exactly_its_case(
    pki: PkiLayout, provinces: dict[str, Province], stub: str, case: str
) -> None:
    results = await run_kit(mtls_options(provinces[stub], pki))
    outcomes = by_outcome(results)
    assert outcomes[Outcome.FAILED] == {case}, [
        r for r in results if r.outcome is not Outcome.PASSED
    ]
    assert outcomes[Outcome.SKIPPED] == {c.name for c in CASES if case in c.requires}
    failed = next(r for r in results if r.name == case)
    assert failed.problem
    assert failed.sent
    assert failed.got


async def test_a_failing_province_exits_1_and_its_junit_names_the_rule(
    tmp_path: Path, pki: PkiLayout, provinces: dict[str, Province]
) -> None:
    junit = tmp_path / "conformance.xml"
    code, out, _ = await run_cli(
        "conformance",
        provinces["unreported"].address,
        "--region",
        REGION,
        "--pki-dir",
        str(pki.root),
        "--junit",
        str(junit),
        *QUICK_FLAGS,
    )
    assert code == exits.FAILED
    assert "FAIL licenses.keys" in out
    assert "SKIP reports.accepted-by-gateway: not asked for" in out
    assert "does not conform: 12 passed, 1 failed, 1 skipped" in out.splitlines()[-1]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("failures"), suite.get("skipped")) == ("1", "1")
    failures = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == ["licenses.keys"]
    failure = failures[0].find("failure")
    assert failure is not None
    assert "private members d" in (failure.get("message") or "")
    assert "private members d" in (failure.text or "")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["127.0.0.1", "--region", REGION, "--plaintext"], "'127.0.0.1' is not HOST:PORT"),
        (["127.0.0.1:1", "--region", "440100", "--plaintext"], "province-level"),
        (["127.0.0.1:1", "--region", REGION, "--pki-dir", "/nonexistent"], "no PKI there"),
        (["127.0.0.1:1", "--region", REGION, "--plaintext", "--cert", "x.pem"], "without"),
        (["127.0.0.1:1", "--region", "650000", "--plaintext"], "--local-code"),
        (["127.0.0.1:1", "--region", REGION, "--plaintext", "--gateway-side", "x"], "[HOST:]PORT"),
    ],
)
def test_an_ordinary_mistake_is_one_line_and_the_usage_code(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["conformance", *args]) == exits.USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("tongban: ")
    assert says in err
    assert "\n" not in err


def test_a_certificate_that_does_not_fit_is_named_before_dialling(
    pki: PkiLayout, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["conformance", "127.0.0.1:1", "--region", REGION, "--ca", str(pki.ca_cert)]
    argv += ["--cert", str(pki.gateway.cert), "--key", str(pki.regions[REGION].key)]
    assert cli.main(argv) == exits.USAGE
    assert f"is not the key of {pki.gateway.cert}" in capsys.readouterr().err


def test_an_unreachable_province_stops_the_run_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    argv = ["conformance", f"127.0.0.1:{port}", "--region", REGION, "--plaintext"]
    assert cli.main([*argv, "--timeout", "1"]) == exits.UNREACHABLE
    err = capsys.readouterr().err.strip()
    assert err == f"tongban: cannot connect to 127.0.0.1:{port} within 1 s: is it listening?"
