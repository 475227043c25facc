"""`tongban conformance HOST:PORT --region CODE`: the command line of the kit.

Invariants:
- An ordinary mistake (a malformed address, a certificate that does not fit, an unreadable
  list) is a `CommandError`: one line and the usage exit code, said by `tools.exits` as for
  every command; a province that cannot be reached is `UNREACHABLE`.
- Over mTLS by default, with the gateway's certificate: `--ca/--cert/--key`, else the
  federation's PKI found as `tools.locate` says; the files are checked before dialling
  (`tools.connect.check`). Plaintext only when `--plaintext` (or `--insecure`, as the other
  commands call it) says so.
- stdout carries one line per case as it ends, then the summary; the exit code is 0 when no
  case failed, 1 otherwise. `--junit FILE` also writes the run as JUnit XML.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.catalog import fields
from gateway.catalog.documents import loads_json, parse_region_catalog
from gateway.licenses.token import china_date
from gateway.tools import locate
from gateway.tools.conformance.probes import KitOptions, KitTls
from gateway.tools.conformance.results import line, passed, summary, write_junit
from gateway.tools.conformance.runner import KitError, run_kit
from gateway.tools.connect import ClientFiles, check
from gateway.tools.exits import FAILED, OK, UNREACHABLE, USAGE, CommandError

SUMMARY = "check a province's RegionService against the southbound contract, as the gateway"
EXAMPLE = (
    "tongban conformance 127.0.0.1:50061 --region 440000 --gateway-side 50070 "
    "--junit conformance.xml"
)


def add_command(subparsers: Any, environ: Mapping[str, str]) -> None:
    """Adds `conformance` to the `tongban` subcommands; `environ` is where the PKI and the
    standards data may be named (`tools.locate`)."""
    parser = subparsers.add_parser(
        "conformance",
        help=SUMMARY,
        description=SUMMARY + ": one line per case (PASS, FAIL or SKIP), then a summary.",
        epilog=f"example:\n  {EXAMPLE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", metavar="HOST:PORT", help="the province's RegionService")
    parser.add_argument("--region", required=True, help="the province's code, e.g. 440000")
    parser.add_argument(
        "--local-code",
        help="a local matter code it implements (default: the first live one of its list)",
    )
    parser.add_argument(
        "--implementation-list",
        help="its implementation list (default: implementations/CODE.json of the standards data)",
    )
    parser.add_argument("--standards-dir", help="the standards data (default: as for tongban)")
    parser.add_argument(
        "--plaintext",
        "--insecure",
        dest="plaintext",
        action="store_true",
        help="call without TLS, for a local trial (the mTLS case is skipped)",
    )
    parser.add_argument("--ca", help="the federation's CA certificate (PEM)")
    parser.add_argument("--cert", help="the gateway's certificate (PEM; client and server use)")
    parser.add_argument("--key", help="its private key (PEM)")
    parser.add_argument(
        "--pki-dir", help="the federation's PKI, used when --ca/--cert/--key are not given"
    )
    parser.add_argument(
        "--other-cert",
        help="a client certificate that is not the gateway's (default: the province's own in "
        "the PKI, if there)",
    )
    parser.add_argument("--other-key", help="its private key")
    parser.add_argument("--server-name", help="the name in the province's server certificate")
    parser.add_argument(
        "--gateway-side",
        metavar="[HOST:]PORT",
        help="serve the gateway's ReportApplicationStatus there, where the province reports "
        "(HOST default: 127.0.0.1)",
    )
    seconds = {"type": float, "metavar": "SECONDS"}
    parser.add_argument(
        "--report-timeout",
        default=30.0,
        help="how long to wait for the report (default: %(default)s)",
        **seconds,
    )
    parser.add_argument(
        "--timeout", default=10.0, help="deadline of each call (default: %(default)s)", **seconds
    )
    parser.add_argument(
        "--deadline-probes",
        type=int,
        default=16,
        help="deliveries with a 1 ms deadline to send (default: %(default)s)",
    )
    parser.add_argument(
        "--deadline-grace",
        default=0.5,
        help="first look for their cases after (default: %(default)s)",
        **seconds,
    )
    parser.add_argument(
        "--deadline-settle",
        default=2.0,
        help="second look, that much later (default: %(default)s)",
        **seconds,
    )
    parser.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    parser.set_defaults(func=lambda args: command(args, environ))


def command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Runs the kit as the command line says; returns the exit code."""
    options = options_from_args(args, environ, Path.cwd(), datetime.now(UTC))
    started, clock = datetime.now(UTC), time.monotonic()
    try:
        results = asyncio.run(run_kit(options, on_result=lambda r: print(line(r), flush=True)))
    except KitError as error:
        raise CommandError(str(error), code=UNREACHABLE if error.unreachable else USAGE) from None
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
    return OK if passed(results) else FAILED


def options_from_args(
    args: argparse.Namespace, environ: Mapping[str, str], cwd: Path, now: datetime
) -> KitOptions:
    """The run the command line asks for; raises `CommandError`."""
    _host_port(args.target, "the province's address", "HOST:PORT")
    violation = fields.region_code(args.region, "--region")
    if violation is not None:
        raise CommandError(f"--region {args.region!r}: {violation.description}")
    for name in ("timeout", "report_timeout", "deadline_grace", "deadline_settle"):
        if not getattr(args, name) > 0:
            raise CommandError(f"--{name.replace('_', '-')} must be a positive number of seconds")
    if args.deadline_probes < 1:
        raise CommandError("--deadline-probes must be 1 or more")
    local_code, national_code, catalog_version = _matter(args, environ, cwd)
    side = None
    if args.gateway_side:
        text = args.gateway_side if ":" in args.gateway_side else f"127.0.0.1:{args.gateway_side}"
        side = _host_port(text, "--gateway-side", "[HOST:]PORT")
    return KitOptions(
        target=args.target,
        region=args.region,
        local_code=local_code,
        national_code=national_code,
        catalog_version=catalog_version,
        tls=_tls(args, environ, cwd, now),
        gateway_side=side,
        call_timeout=args.timeout,
        report_timeout=args.report_timeout,
        deadline_probes=args.deadline_probes,
        deadline_grace=args.deadline_grace,
        deadline_settle=args.deadline_settle,
    )


def _host_port(text: str, what: str, shape: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"{what} {text!r} is not {shape}")
    return host.strip("[]"), int(port)


def _matter(
    args: argparse.Namespace, environ: Mapping[str, str], cwd: Path
) -> tuple[str, str, str]:
    """(local code, its national code, catalog version) to deliver applications in."""
    if args.local_code:
        return args.local_code, "", ""
    if args.implementation_list:
        path = Path(args.implementation_list)
    else:
        standards = locate.standards_dir(args.standards_dir, environ, cwd)
        path = standards / "implementations" / f"{args.region}.json"
        if not path.is_file():
            raise CommandError(
                f"no implementation list of region {args.region} in {path.parent}: give "
                "--local-code (a matter code the province implements) or --implementation-list"
            )
    data = loads_json(path.read_bytes())
    parsed = None if data.value is None else parse_region_catalog(data.value, (args.region,))
    if parsed is None or parsed.value is None or parsed.value.region_code != args.region:
        raise CommandError(f"{path} is not an implementation list of region {args.region}")
    today = china_date(time.time())
    live = next((e for e in parsed.value.entries if not e.retired_on(today)), None)
    if live is None:
        raise CommandError(f"{path} lists no live matter: give --local-code")
    return live.local_code, live.national_codes[0], parsed.value.catalog_version


def _tls(
    args: argparse.Namespace, environ: Mapping[str, str], cwd: Path, now: datetime
) -> KitTls | None:
    if args.plaintext:
        if args.ca or args.cert or args.key or args.other_cert or args.pki_dir:
            raise CommandError("--plaintext goes without certificates")
        return None
    if bool(args.other_cert) != bool(args.other_key):
        raise CommandError("--other-cert and --other-key go together")
    given = (args.ca, args.cert, args.key)
    if any(given):
        if not all(given):
            raise CommandError("--cert, --key and --ca go together")
        gateway = ClientFiles(Path(args.ca), Path(args.cert), Path(args.key))
        pki = None
    else:
        pki = locate.pki_dir(args.pki_dir, environ, cwd)
        gateway = ClientFiles(
            pki / "ca.pem", pki / "server" / "gateway.pem", pki / "server" / "gateway.key"
        )
    check(gateway, now=now)
    other = None
    if args.other_cert:
        other = ClientFiles(gateway.ca, Path(args.other_cert), Path(args.other_key))
    elif pki is not None:
        own = pki / "clients" / f"region-{args.region}"
        if own.with_suffix(".pem").is_file():
            other = ClientFiles(gateway.ca, own.with_suffix(".pem"), own.with_suffix(".key"))
    if other is not None:
        check(other, now=now)
    return KitTls(
        gateway.ca,
        gateway.cert,
        gateway.key,
        None if other is None else other.cert,
        None if other is None else other.key,
        args.server_name,
    )
