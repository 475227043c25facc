"""`tongban conformance HOST:PORT --region CODE`: the command line of the kit.

Invariants:
- An ordinary mistake (a malformed address, missing certificates, an unreadable list) is one
  line on stderr saying what to do, and exit status 2; so is a province that cannot be reached.
- Over mTLS by default, with the gateway's certificate: the dev PKI's under `--pki-dir` unless
  `--ca/--cert/--key` name others; plaintext only when `--plaintext` says so.
- stdout carries one line per case as it ends, then the summary; the exit status is 0 when no
  case failed, 1 otherwise. `--junit FILE` also writes the run as JUnit XML.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.catalog import fields
from gateway.catalog.documents import loads_json, parse_region_catalog
from gateway.licenses.token import china_date
from gateway.tools.conformance.probes import KitOptions, KitTls
from gateway.tools.conformance.results import line, passed, summary, write_junit
from gateway.tools.conformance.runner import KitError, run_kit

DEFAULT_PKI_DIR = Path("data") / "pki"
"""Where `tongban up` keeps its development PKI."""


class UsageError(ValueError):
    """The command line cannot make a run; the message says what to give instead."""


def add_command(subparsers: Any) -> None:
    """Adds `conformance` to the `tongban` subcommands."""
    parser = subparsers.add_parser(
        "conformance",
        help="check a province's RegionService against the southbound contract",
        description="Run the southbound contract's cases against a RegionService, as the "
        "gateway would call it, and report each as passed or failed.",
    )
    parser.add_argument("target", metavar="HOST:PORT", help="the province's RegionService")
    parser.add_argument("--region", required=True, help="the province's code, e.g. 440000")
    parser.add_argument(
        "--local-code",
        help="a local matter code it implements (default: the first live one of its list)",
    )
    parser.add_argument(
        "--implementation-list", help="its list (default: STANDARDS_DIR/implementations/CODE.json)"
    )
    parser.add_argument("--standards-dir", default="standards")
    parser.add_argument(
        "--plaintext", action="store_true", help="call without TLS (a local trial only)"
    )
    parser.add_argument("--ca", help="the federation's CA certificate (PEM)")
    parser.add_argument("--cert", help="the gateway's certificate (PEM; client and server use)")
    parser.add_argument("--key", help="its private key (PEM)")
    parser.add_argument(
        "--pki-dir",
        default=str(DEFAULT_PKI_DIR),
        help="dev PKI of `tongban up`, used when --ca/--cert/--key are not given",
    )
    parser.add_argument(
        "--other-cert",
        help="a client certificate that is not the gateway's (default: the province's own "
        "from --pki-dir)",
    )
    parser.add_argument("--other-key", help="its private key")
    parser.add_argument("--server-name", help="the name in the province's server certificate")
    parser.add_argument(
        "--gateway-side",
        metavar="[HOST:]PORT",
        help="serve the gateway's ReportApplicationStatus here (the province must report to it)",
    )
    parser.add_argument("--report-timeout", type=float, default=30.0, help="seconds (30)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call (10)")
    parser.add_argument("--deadline-probes", type=int, default=16, help="(16)")
    parser.add_argument("--deadline-grace", type=float, default=0.5, help="seconds (0.5)")
    parser.add_argument("--deadline-settle", type=float, default=2.0, help="seconds (2)")
    parser.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    parser.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Runs the kit as the command line says; returns the exit status."""
    try:
        options = options_from_args(args)
    except UsageError as error:
        print(f"tongban conformance: {error}", file=sys.stderr)
        return 2
    started, clock = datetime.now(UTC), time.monotonic()
    try:
        results = asyncio.run(run_kit(options, on_result=lambda r: print(line(r), flush=True)))
    except KitError as error:
        print(f"tongban conformance: {error}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - clock
    print(summary(results, region=options.region, target=options.target, seconds=seconds))
    if args.junit:
        write_junit(
            Path(args.junit),
            results,
            region=options.region,
            target=options.target,
            seconds=seconds,
            started=started,
        )
    return 0 if passed(results) else 1


def options_from_args(args: argparse.Namespace) -> KitOptions:
    """The run the command line asks for; raises `UsageError`."""
    _host_port(args.target, "HOST:PORT")
    violation = fields.region_code(args.region, "--region")
    if violation is not None:
        raise UsageError(f"--region {args.region!r}: {violation.description}")
    for name in ("timeout", "report_timeout", "deadline_grace", "deadline_settle"):
        if not getattr(args, name) > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive number of seconds")
    if args.deadline_probes < 1:
        raise UsageError("--deadline-probes must be 1 or more")
    local_code, national_code, catalog_version = _matter(args)
    side = None
    if args.gateway_side:
        text = args.gateway_side if ":" in args.gateway_side else f"127.0.0.1:{args.gateway_side}"
        side = _host_port(text, "--gateway-side")
    return KitOptions(
        target=args.target,
        region=args.region,
        local_code=local_code,
        national_code=national_code,
        catalog_version=catalog_version,
        tls=_tls(args),
        gateway_side=side,
        call_timeout=args.timeout,
        report_timeout=args.report_timeout,
        deadline_probes=args.deadline_probes,
        deadline_grace=args.deadline_grace,
        deadline_settle=args.deadline_settle,
    )


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{what} {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _matter(args: argparse.Namespace) -> tuple[str, str, str]:
    """(local code, its national code, catalog version) to deliver applications in."""
    if args.local_code:
        return args.local_code, "", ""
    path = Path(
        args.implementation_list
        or Path(args.standards_dir) / "implementations" / f"{args.region}.json"
    )
    if not path.is_file():
        raise UsageError(
            f"no implementation list at {path}: give --local-code (a matter code the province "
            "implements) or --implementation-list"
        )
    data = loads_json(path.read_bytes())
    parsed = None if data.value is None else parse_region_catalog(data.value, (args.region,))
    if parsed is None or parsed.value is None or parsed.value.region_code != args.region:
        raise UsageError(f"{path} is not an implementation list of region {args.region}")
    today = china_date(time.time())
    live = next((e for e in parsed.value.entries if not e.retired_on(today)), None)
    if live is None:
        raise UsageError(f"{path} lists no live matter: give --local-code")
    return live.local_code, live.national_codes[0], parsed.value.catalog_version


def _tls(args: argparse.Namespace) -> KitTls | None:
    if args.plaintext:
        if args.ca or args.cert or args.key or args.other_cert:
            raise UsageError("--plaintext goes without certificates")
        return None
    pki = Path(args.pki_dir)
    given = (args.ca, args.cert, args.key)
    if any(given) and not all(given):
        raise UsageError("--ca, --cert and --key go together")
    ca, cert, key = (
        (Path(args.ca), Path(args.cert), Path(args.key))
        if all(given)
        else (pki / "ca.pem", pki / "server" / "gateway.pem", pki / "server" / "gateway.key")
    )
    for path in (ca, cert, key):
        if not path.is_file():
            raise UsageError(
                f"no {path}: give --ca, --cert and --key (the gateway's certificate from the "
                "federation's PKI), or --plaintext for a local trial"
            )
    if bool(args.other_cert) != bool(args.other_key):
        raise UsageError("--other-cert and --other-key go together")
    other_cert, other_key = (
        (Path(args.other_cert), Path(args.other_key))
        if args.other_cert
        else (
            pki / "clients" / f"region-{args.region}.pem",
            pki / "clients" / f"region-{args.region}.key",
        )
    )
    if args.other_cert and not (other_cert.is_file() and other_key.is_file()):
        raise UsageError(f"no {other_cert} or {other_key}")
    have_other = other_cert.is_file() and other_key.is_file()
    return KitTls(
        ca,
        cert,
        key,
        other_cert if have_other else None,
        other_key if have_other else None,
        args.server_name,
    )
