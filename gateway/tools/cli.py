"""`tongban`: run the gateway and its local federation, act as a platform, manage catalogs.

This module is the only reader of `os.environ` (with the entry point, `tools.__main__`, which
sets gRPC core's log level): it merges the environment with the flags into the mapping that
`config.load_config` turns into a `GatewayConfig`, and hands it to `tools.locate`.

Every ordinary mistake ends as one line and an exit code, mapped in one place (`tools.exits`,
listed in `tongban --help`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path

import grpc

from gateway.api.v1 import application_pb2, application_pb2_grpc
from gateway.app.config import DEFAULT_PORT, load_config
from gateway.catalog import documents, signing
from gateway.catalog.diff import diff_catalogs
from gateway.catalog.registry import load_provinces
from gateway.observability.audit_log import AuditHead, verify_audit_log
from gateway.security.pki import DEV_OPS
from gateway.tools import (
    bundles,
    commands_catalog,
    commands_publish,
    commands_stub,
    connect,
    exits,
    locate,
    pem,
)
from gateway.tools.commands import Hooks, command, json_flag
from gateway.tools.commands_apply import (
    APPLY_FLAGS,
    STATUS_FLAGS,
    show_application,
    state_name,
    summarize,
)
from gateway.tools.conformance.command import add_command as add_conformance_command
from gateway.tools.exits import CommandError
from gateway.tools.federation import DEFAULT_REGIONS
from gateway.tools.output import NO_FLAGS, Output

ID_TYPES = {
    "citizen": application_pb2.ID_TYPE_CITIZEN_ID,
    "uscc": application_pb2.ID_TYPE_USCC,
    "hmt-permit": application_pb2.ID_TYPE_HMT_RESIDENCE_PERMIT,
    "foreign-pr": application_pb2.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE,
}


def _env_flags(args: argparse.Namespace, names: Mapping[str, str]) -> dict[str, str]:
    # PGPASSWORD too: libpq's variable, a PostgreSQL store's password when no other is given.
    mapping = {k: v for k, v in os.environ.items() if k.startswith("TONGBAN_") or k == "PGPASSWORD"}
    for attr, key in names.items():
        value = getattr(args, attr, None)
        if value is not None:
            mapping[key] = str(value)
    return mapping


def _cmd_gateway(args: argparse.Namespace) -> int:
    from gateway.app.server import serve
    from gateway.observability import logs

    logs.configure(args.log_level)
    config = load_config(
        _env_flags(
            args,
            {
                "config": "TONGBAN_CONFIG",
                "host": "TONGBAN_HOST",
                "port": "TONGBAN_PORT",
                "data_dir": "TONGBAN_DATA_DIR",
                "store": "TONGBAN_STORE",
                "standards_dir": "TONGBAN_STANDARDS_DIR",
                "regions": "TONGBAN_REGIONS",
                "standards_keys": "TONGBAN_STANDARDS_KEYS",
                "metrics_port": "TONGBAN_METRICS_PORT",
                "tls_ca": "TONGBAN_TLS_CA",
                "tls_cert": "TONGBAN_TLS_CERT",
                "tls_key": "TONGBAN_TLS_KEY",
                "deny_serials": "TONGBAN_DENY_SERIALS",
                "rate_limits": "TONGBAN_RATE_LIMITS",
                "insecure": "TONGBAN_INSECURE",
                "health_port": "TONGBAN_HEALTH_PORT",
            },
        )
    )
    if args.workers < 1:
        raise CommandError("gateway: --workers must be 1 or more")
    locate.checked_standards(
        config.standards_dir,
        "--standards-dir, TONGBAN_STANDARDS_DIR or --config (default ./standards)",
    )
    if args.workers > 1:
        from gateway.app.workers import supervise

        return asyncio.run(
            supervise(args.argv, host=config.host, port=config.port, workers=args.workers)
        )
    asyncio.run(serve(config))
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.app.config import GatewayConfig, load_store
    from gateway.storage.backends import migrate_store

    mapping = _env_flags(args, {"store": "TONGBAN_STORE", "data_dir": "TONGBAN_DATA_DIR"})
    store = GatewayConfig(
        data_dir=Path(mapping.get("TONGBAN_DATA_DIR") or "data"), store=load_store(mapping)
    ).store_config
    version = asyncio.run(migrate_store(store))
    print(json.dumps({"store": str(store), "schema_version": version}))
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from gateway.app.config import load_store
    from gateway.observability import logs
    from gateway.storage.location import PostgresConfig
    from gateway.tools.local import AUTO_DECIDE, run_local
    from region_stubs.decisions import Decisions, DecisionsInvalid

    logs.configure(args.log_level)
    decisions = [*args.decide, *([AUTO_DECIDE] if args.auto_decide else [])]
    try:
        Decisions.parse(decisions)
    except DecisionsInvalid as e:
        raise CommandError(f"up: --decide: {e}") from None
    store = load_store(_env_flags(args, {"store": "TONGBAN_STORE"}))
    if args.replicas < 1:
        raise CommandError("up: --replicas must be 1 or more")
    if args.replicas > 1 and not isinstance(store, PostgresConfig):
        raise CommandError("up: replicas share a PostgreSQL store: give --store postgresql://…")
    return asyncio.run(
        run_local(
            data_dir=Path(args.data_dir),
            standards_dir=_standards(args),
            port=args.port,
            stub_base_port=args.stub_base_port,
            regions=args.regions.split(","),
            metrics_port=args.metrics_port,
            insecure=args.insecure,
            store=store,
            replicas=args.replicas,
            decisions=decisions,
            http_port=args.http,
        )
    )


def _cmd_region_stub(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from region_stubs.server import main as stub_main

    return stub_main(list(rest))


GATEWAY_HELP = "HOST:PORT, or several replicas' HOST:PORT,... (balanced, UNAVAILABLE retried)"


def _standards(args: argparse.Namespace) -> Path:
    return locate.standards_dir(args.standards_dir, os.environ, Path.cwd())


def _channel(
    args: argparse.Namespace, role: str, name: str, *, chosen_by: str
) -> AbstractAsyncContextManager[grpc.aio.Channel]:
    """A channel to `--gateway` presenting `role`/`name`'s certificate (from --ca/--cert/--key,
    else the federation's PKI), checked first; plaintext only with --insecure. `chosen_by` is
    the flag that named the identity. See `tools.connect`."""
    files = None
    if not args.insecure:
        files = connect.client_files(
            role=role,
            name=name,
            chosen_by=chosen_by,
            ca=args.ca,
            cert=args.cert,
            key=args.key,
            pki_dir=args.pki_dir,
            env=os.environ,
            cwd=Path.cwd(),
            now=datetime.now(UTC),
        )
    return connect.open_gateway(args.gateway, files)


def _materials(args: argparse.Namespace) -> list[application_pb2.Material]:
    materials = []
    for item in args.paper or []:
        material_id, _, description = item.partition("=")
        materials.append(
            application_pb2.Material(
                material_id=material_id,
                paper=application_pb2.PaperMaterial(description=description),
            )
        )
    for item in args.license or []:
        material_id, _, token = item.partition("=")
        if token.startswith("@"):
            token = Path(token[1:]).read_text(encoding="utf-8").strip()
        materials.append(application_pb2.Material(material_id=material_id, license_token=token))
    return materials


async def _apply(args: argparse.Namespace) -> int:
    request = application_pb2.SubmitApplicationRequest(
        request_id=args.request_id or str(uuid.uuid4()),
        origin_region=args.origin,
        target_region=args.target,
        local_matter_code=args.local_code,
        national_matter_code=args.national_code or "",
        applicant=application_pb2.Applicant(
            id_type=ID_TYPES[args.id_type], id_number=args.id_number, display_name=args.name
        ),
        form_fields=[
            application_pb2.FormField(key=k, value=v)
            for k, _, v in (f.partition("=") for f in args.field or [])
        ],
        materials=_materials(args),
    )
    async with _channel(args, "region", args.origin, chosen_by="--origin") as channel:
        stub = application_pb2_grpc.ApplicationServiceStub(channel)
        response = await stub.SubmitApplication(request, timeout=args.timeout)
    show_application(Output(json_mode=args.json), response.application)
    return 0


async def _status(args: argparse.Namespace) -> int:
    name = (
        args.application
        if args.application.startswith("applications/")
        else (f"applications/{args.application}")
    )
    role, _, identity = (args.as_identity or f"ops/{DEV_OPS}").partition("/")
    out = Output(json_mode=args.json)
    async with _channel(args, role, identity, chosen_by="--as") as channel:
        stub = application_pb2_grpc.ApplicationServiceStub(channel)
        if args.watch:
            call = stub.WatchApplication(application_pb2.WatchApplicationRequest(name=name))
            async for item in call:
                app = item.application
                if out.json_mode:
                    out.data(summarize(app))
                else:
                    out.line(f"{state_name(app.state)} {app.state_reason}".strip())
            return 0
        response = await stub.GetApplication(application_pb2.GetApplicationRequest(name=name))
    show_application(out, response.application)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway.tools.demo import run_demo

    return asyncio.run(run_demo(_standards(args), keep=args.keep))


# -- catalog commands -----------------------------------------------------------------------


def _cmd_catalog_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out_dir)
    private = out / f"{args.name}.key.pem"
    public = out / f"{args.name}.pub.pem"
    existing = [str(p) for p in (private, public) if p.exists()]
    if existing and not args.force:
        print(
            f"tongban catalog keygen: {existing[0]} exists; a new pair would make gateways that "
            "trust the old public key refuse every publication signed with the new one. "
            "Use --force to replace it.",
            file=sys.stderr,
        )
        return 1
    out.mkdir(parents=True, exist_ok=True)
    key = signing.generate_private_key(args.algorithm)
    private.write_bytes(signing.private_pem(key))
    private.chmod(0o600)
    public.write_bytes(signing.public_pem(key))
    print(
        json.dumps(
            {"private_key": str(private), "public_key": str(public), "algorithm": args.algorithm}
        )
    )
    return 0


def _cmd_catalog_sign(args: argparse.Namespace) -> int:
    document = Path(args.catalog).read_bytes()
    loaded = documents.loads_json(document)
    if loaded.value is None:
        _report(args.catalog, loaded.violations)
        return 1
    parsed = documents.parse_catalog(loaded.value, load_provinces(_standards(args)))
    if parsed.value is None and not args.force:
        _report(args.catalog, parsed.violations)
        print(
            f"tongban catalog sign: {args.catalog} has {len(parsed.violations)} problem(s); a "
            "gateway would refuse it. Fix them, or use --force to sign it anyway.",
            file=sys.stderr,
        )
        return 1
    publisher = args.publisher or str(loaded.value.get("publisher", ""))
    signed = signing.sign_catalog(document, _signing_key(Path(args.key)), publisher)
    Path(args.out).write_text(signed, encoding="utf-8")
    print(json.dumps({"signed": args.out, "publisher": publisher}))
    return 0


def _signing_key(path: Path) -> signing.PrivateKey:
    pem.private_key(path, hint="give the NAME.key.pem that `tongban catalog keygen` made")
    try:
        return signing.load_private_key(path)
    except ValueError as error:
        raise CommandError(f"{error}: give an Ed25519 or P-256 signing key") from None


def _cmd_catalog_diff(args: argparse.Namespace) -> int:
    provinces = load_provinces(_standards(args))
    parsed = []
    for path in (args.old, args.new):
        loaded = documents.loads_json(Path(path).read_bytes())
        result = documents.parse_catalog(loaded.value or {}, provinces)
        if result.value is None:
            _report(path, loaded.violations or result.violations)
            return 1
        parsed.append(result.value)
    diff = diff_catalogs(parsed[0], parsed[1])
    out = Output(json_mode=args.json)
    if out.json_mode:
        out.data(
            {
                "from_version": diff.from_version,
                "to_version": diff.to_version,
                "added": list(diff.added),
                "removed": list(diff.removed),
                "changed": {code: list(elements) for code, elements in diff.changed},
            }
        )
        return 0
    out.line(
        f"catalog {diff.from_version} → {diff.to_version}: {len(diff.added)} added, "
        f"{len(diff.removed)} removed, {len(diff.changed)} changed"
    )
    names = {**parsed[0].matters, **parsed[1].matters}
    rows = [("added", code, names[code].name, "") for code in diff.added]
    rows += [("removed", code, names[code].name, "") for code in diff.removed]
    rows += [("changed", c, names[c].name, ", ".join(e)) for c, e in diff.changed]
    if rows:
        out.table(["Change", "Code", "Matter", "Elements changed"], rows)
    return 0


def _report(path: str, violations: Sequence[object]) -> None:
    for v in violations:
        print(
            f"{path}: {getattr(v, 'field', '') or '(document)'}: {getattr(v, 'reason', '')}: "
            f"{getattr(v, 'description', '')}"
        )


# -- security commands ----------------------------------------------------------------------


def _cmd_certs(args: argparse.Namespace) -> int:
    from gateway.tools.local import dev_pki

    layout = dev_pki(Path(args.out_dir), args.regions.split(","))
    print(
        json.dumps(
            {
                "ca": str(layout.ca_cert),
                "gateway": str(layout.gateway.cert),
                "edge": str(layout.edge.cert),
                "regions": {c: str(p.cert) for c, p in layout.regions.items()},
                "standards_bodies": {n: str(p.cert) for n, p in layout.standards_bodies.items()},
                "ops": {n: str(p.cert) for n, p in layout.ops.items()},
            },
            indent=2,
        )
    )
    return 0


def _audit_logs(paths: Sequence[str]) -> list[Path]:
    """The logs named: files as given, and each directory's `*.jsonl` files."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        found.extend(sorted(path.glob("*.jsonl")) if path.is_dir() else [path])
    return found


def _verdict(path: Path, anchor: AuditHead | None) -> dict[str, object]:
    """One chain's verdict as printed (OSError if it cannot be read)."""
    verdict = verify_audit_log(path, expected_head=anchor)
    head = None if verdict.head is None else f"{verdict.head.seq}:{verdict.head.hash}"
    if verdict.ok:
        return {"ok": True, "records": verdict.records_checked, "head": head}
    return {
        "ok": False,
        "kind": verdict.kind.value if verdict.kind else None,
        "record": verdict.first_bad_seq,
        "line": verdict.line,
        "verified_records": verdict.records_checked,
        "last_good_head": head,
    }


_HEAD = re.compile(r"(?P<seq>[0-9]+):(?P<hash>[0-9a-fA-F]{64})")


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    """One log: its verdict. Several (each replica's chain, or a directory of them): each
    one's verdict, and ok only if every chain is intact."""
    logs = _audit_logs(args.paths)
    if not logs:
        raise CommandError(f"no audit logs (*.jsonl) in {', '.join(args.paths)}")
    anchors: dict[Path, AuditHead] = {}
    for item in args.expect_head or []:
        named, equals, head = item.rpartition("=")
        shape = _HEAD.fullmatch(head)
        if shape is None:
            raise CommandError(
                f"--expect-head {item}: a head is SEQ:HASH as `tongban audit verify` prints it "
                "(e.g. 42:9f86d081…, 64 hex digits), with LOG= before it among several logs"
            )
        matching = [p for p in logs if not equals or named in (str(p), p.name)]
        if len(matching) != 1:
            raise CommandError(f"--expect-head {item}: name one of the logs")
        anchors[matching[0]] = AuditHead(int(shape["seq"]), shape["hash"].lower())
    verdicts = [{"path": str(path), **_verdict(path, anchors.get(path))} for path in logs]
    ok = all(v["ok"] for v in verdicts)
    if len(args.paths) == 1 and len(logs) == 1 and not Path(args.paths[0]).is_dir():
        del verdicts[0]["path"]
        print(json.dumps(verdicts[0]))
    else:
        records = sum(int(str(v.get("records", 0))) for v in verdicts)
        print(json.dumps({"ok": ok, "records": records, "chains": verdicts}))
    return 0 if ok else 1


def _client_tls_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ca", help="the federation's CA (PEM): the gateway's certificate and yours chain to it"
    )
    parser.add_argument(
        "--cert", help="your client certificate (PEM); with --key and --ca, instead of the PKI's"
    )
    parser.add_argument("--key", help="the private key (PEM) of --cert")
    parser.add_argument(
        "--pki-dir",
        help="the federation's PKI as `tongban up` or `tongban certs` made it (default: "
        f"${locate.DATA_DIR_ENV}/pki, else the nearest data/pki here or above)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext, no certificate: only for a gateway started with --insecure",
    )


# -- parser -------------------------------------------------------------------------------


def _version() -> str:
    try:
        return importlib_metadata.version("tongban")
    except importlib_metadata.PackageNotFoundError:
        return "unknown (not installed)"


ENVIRONMENT_HELP = f"""environment:
  {locate.DATA_DIR_ENV}       data directory of `up` and `certs` (default ./data), where
                         client commands find the PKI (else: the nearest data/pki here or above)
  {locate.STANDARDS_DIR_ENV}  standards data (default: the nearest standards/ here or above)
  TONGBAN_*              the gateway's settings (README, "Settings"); its flags override them
  GRPC_VERBOSITY         gRPC core's own log lines: off (NONE) unless set, or --log-level debug"""

STANDARDS_HELP = (
    "regions, catalogs and implementation lists (default: "
    f"${locate.STANDARDS_DIR_ENV}, else the nearest standards/ here or above)"
)


def build_parser() -> argparse.ArgumentParser:
    """The `tongban` command line."""
    parser = argparse.ArgumentParser(
        prog="tongban",
        description="Run the gateway and its local federation, act as a platform, manage "
        "catalogs.\n`tongban COMMAND --help` shows each command's flags, defaults and an example.",
        epilog=f"{exits.EXIT_CODES_HELP}\n\n{ENVIRONMENT_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tongban {_version()}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="how much to log, any case; debug also shows gRPC core's lines (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    data_dir = locate.data_dir(os.environ)

    up = command(
        sub,
        "up",
        "run the gateway with its local federation of region stubs",
        "tongban up --port 50052 --stub-base-port 0 --regions 440000,510000",
    )
    up.add_argument(
        "--data-dir",
        default=str(data_dir),
        help=f"store, audit log and development PKI; ${locate.DATA_DIR_ENV} sets the default "
        "(default: %(default)s)",
    )
    up.add_argument("--standards-dir", help=STANDARDS_HELP)
    up.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="the gateway's gRPC port; 0: any free port (default: %(default)s)",
    )
    up.add_argument(
        "--stub-base-port",
        type=int,
        default=50061,
        help="the first region stub's port, the others on the ports after it; 0: any free "
        "ports (default: %(default)s)",
    )
    up.add_argument(
        "--metrics-port",
        type=int,
        default=9464,
        help="Prometheus /metrics HTTP port; -1: none (default: %(default)s)",
    )
    up.add_argument(
        "--regions",
        default=",".join(DEFAULT_REGIONS),
        help="province codes of the region stubs, comma-separated (default: %(default)s)",
    )
    up.add_argument(
        "--insecure", action="store_true", help="plaintext, no identities (development only)"
    )
    up.add_argument(
        "--store", help="a SQLite file or a postgresql:// URL (default: DATA_DIR/gateway.sqlite3)"
    )
    up.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="gateway replicas on consecutive ports from --port, sharing a PostgreSQL --store "
        "(default: %(default)s)",
    )
    up.add_argument(
        "--http", type=int, metavar="PORT", help="serve HTTP/JSON over HTTPS on PORT (Envoy)"
    )
    up.add_argument(
        "--decide",
        action="append",
        default=[],
        metavar="MATTER=ACTION",
        help="how every stub decides a national matter's cases: manual (the default: wait for"
        " DecideCase), complete[:DELAY] or reject[:DELAY][:REASON]; MATTER is a 12-digit code"
        " or * (repeatable; e.g. 002031021000=complete:2s)",
    )
    up.add_argument(
        "--auto-decide",
        action="store_true",
        help="every stub accepts each case at once and completes it a second later, issuing"
        " its licences, so bundles run end to end (as --decide '*=complete:1s')",
    )
    up.set_defaults(func=_cmd_up)

    certs = command(
        sub,
        "certs",
        "create or refresh the development PKI (certificates valid 30 days)",
        "tongban certs --regions 440000,510000",
    )
    certs.add_argument(
        "--out-dir",
        default=str(data_dir / locate.PKI),
        help=f"where to write it; ${locate.DATA_DIR_ENV}/pki by default (default: %(default)s)",
    )
    certs.add_argument(
        "--regions",
        default=",".join(DEFAULT_REGIONS),
        help="provinces to make certificates for, comma-separated (default: %(default)s)",
    )
    certs.set_defaults(func=_cmd_certs)

    audit = command(sub, "audit", "audit log tools", "tongban audit verify data/audit.jsonl")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    verify = command(
        asub,
        "verify",
        "check audit logs' hash chains (one per replica; a directory: every log)",
        "tongban audit verify data/audit.jsonl --expect-head "
        "42:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    )
    verify.add_argument("paths", nargs="+", metavar="path", help="a log file or a directory")
    verify.add_argument(
        "--expect-head",
        action="append",
        help="[LOG=]SEQ:HASH of a head kept elsewhere, as printed (LOG: which one, among several)",
    )
    verify.set_defaults(func=_cmd_audit_verify)

    gw = command(
        sub,
        "gateway",
        "run the gateway alone (flags override TONGBAN_* environment variables)",
        "tongban gateway --tls-ca pki/ca.pem --tls-cert pki/server/gateway.pem "
        "--tls-key pki/server/gateway.key --regions 440000=10.0.0.5:50061",
    )
    gw.add_argument("--config", help="a JSON file of TONGBAN_* keys")
    gw.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    gw.add_argument(
        "--port", type=int, help=f"gRPC port; 0: any free port (default: {DEFAULT_PORT})"
    )
    gw.add_argument("--data-dir", help="store, audit log and keys (default: data)")
    gw.add_argument(
        "--store",
        help="a SQLite file path or a postgresql:// URL (default: DATA_DIR/gateway.sqlite3)",
    )
    gw.add_argument(
        "--standards-dir", help="regions, catalogs, implementation lists (default: standards)"
    )
    gw.add_argument("--regions", help="the provinces' stubs, CODE=HOST:PORT,...")
    gw.add_argument(
        "--standards-keys", help="public keys of the standards bodies, BODY=PUBLIC_KEY_PEM,..."
    )
    gw.add_argument(
        "--metrics-port", type=int, help="Prometheus /metrics HTTP port; -1: none (default: 9464)"
    )
    gw.add_argument("--tls-ca", help="CA that client certificates must chain to (PEM)")
    gw.add_argument("--tls-cert", help="the gateway's certificate (PEM, reloaded on change)")
    gw.add_argument("--tls-key", help="the gateway's private key (PEM)")
    gw.add_argument(
        "--deny-serials", help="refused client certificate serials, hex, comma-separated"
    )
    gw.add_argument(
        "--rate-limits",
        help="METHOD=RATE/BURST,... per caller, RATE in calls per second (`*` for all methods)",
    )
    gw.add_argument(
        "--insecure",
        action="store_const",
        const="true",
        help="plaintext, no identities, authorization skipped (development only)",
    )
    gw.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes serving one port (SO_REUSEPORT) (default: %(default)s)",
    )
    gw.add_argument(
        "--health-port", type=int, help="plaintext probe-only health port; -1: none (default: -1)"
    )
    gw.set_defaults(func=_cmd_gateway)

    migrate = command(
        sub,
        "migrate",
        "bring the store's schema to this version and print it, without serving",
        "tongban migrate --store postgresql://postgres@127.0.0.1:5432/tongban",
    )
    migrate.add_argument("--store", help="a SQLite file path or a postgresql:// URL")
    migrate.add_argument(
        "--data-dir", help="where the default SQLite file gateway.sqlite3 is (default: data)"
    )
    migrate.set_defaults(func=_cmd_migrate)

    sub.add_parser(
        "region-stub", help="run one region stub (see `tongban region-stub --help`)", add_help=False
    )

    gateway_address = f"127.0.0.1:{DEFAULT_PORT}"
    apply = command(
        sub,
        "apply",
        "submit an application as a provincial platform would (as the --origin province)",
        "tongban apply --origin 440000 --target 510000 --local-code "
        "11440000MBFYX5N41F2002035011000 --id-number 110105199003071239 --name 张三 "
        "--paper M01=居民身份证复印件 --paper M03=备案登记表",
    )
    apply.add_argument(
        "--gateway", default=gateway_address, help=f"{GATEWAY_HELP} (default: %(default)s)"
    )
    apply.add_argument(
        "--request-id", help="idempotency key: the same id is the same application (default: new)"
    )
    apply.add_argument("--origin", required=True, help="submitting province, e.g. 440000")
    apply.add_argument("--target", required=True, help="handling province, e.g. 510000")
    apply.add_argument("--local-code", required=True, help="matter code in the origin's dialect")
    apply.add_argument("--national-code", help="which national matter, for a merged local code")
    apply.add_argument(
        "--id-type",
        choices=sorted(ID_TYPES),
        default="citizen",
        help="the applicant's document (default: %(default)s)",
    )
    apply.add_argument("--id-number", required=True, help="the applicant's document number")
    apply.add_argument("--name", required=True, help="the applicant's name")
    apply.add_argument("--field", action="append", help="KEY=VALUE form field (repeatable)")
    apply.add_argument(
        "--paper", action="append", help="MATERIAL_ID[=DESCRIPTION] paper material (repeatable)"
    )
    apply.add_argument(
        "--license", action="append", help="MATERIAL_ID=TOKEN or MATERIAL_ID=@FILE e-licence"
    )
    apply.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the gateway's answer (default: %(default)s)",
    )
    _client_tls_flags(apply)
    json_flag(apply)
    apply.set_defaults(func=lambda a: asyncio.run(_apply(a)), flags=APPLY_FLAGS)

    status = command(
        sub,
        "status",
        "get (or --watch) an application",
        "tongban status 0193c6d2-7f3c-7d0a-9a51-3b2f4c1e8d21 --watch --as region/440000",
    )
    status.add_argument("application", help="application id or applications/{id}")
    status.add_argument(
        "--gateway", default=gateway_address, help=f"{GATEWAY_HELP} (default: %(default)s)"
    )
    status.add_argument(
        "--watch", action="store_true", help="print each change of state until it is final"
    )
    status.add_argument(
        "--as",
        dest="as_identity",
        help=f"the identity to call as, ROLE/NAME, e.g. region/440000 (default: ops/{DEV_OPS})",
    )
    _client_tls_flags(status)
    json_flag(status)
    status.set_defaults(func=lambda a: asyncio.run(_status(a)), flags=STATUS_FLAGS)

    bundles.add_commands(
        sub,
        command=command,
        gateway_default=gateway_address,
        gateway_help=GATEWAY_HELP,
        tls_flags=_client_tls_flags,
        channel=_channel,
        id_types=dict(ID_TYPES),
    )

    add_conformance_command(sub, os.environ)

    demo = command(
        sub, "demo", "run a scripted journey on a fresh federation", "tongban demo --keep"
    )
    demo.add_argument("--standards-dir", help=STANDARDS_HELP)
    demo.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    demo.set_defaults(func=_cmd_demo)

    catalog = command(
        sub,
        "catalog",
        "tools for standards bodies",
        "tongban catalog validate standards/implementations/440000.json",
    )
    csub = catalog.add_subparsers(dest="catalog_command", required=True)
    keygen = command(
        csub,
        "keygen",
        "create a signing key pair (NAME.key.pem, NAME.pub.pem)",
        "tongban catalog keygen --name national-standards-body --out-dir keys",
    )
    keygen.add_argument("--name", required=True, help="the standards body's name")
    keygen.add_argument("--out-dir", default="keys", help="where to write (default: %(default)s)")
    keygen.add_argument(
        "--algorithm",
        choices=("EdDSA", "ES256"),
        default="EdDSA",
        help="Ed25519 or P-256 (default: %(default)s)",
    )
    keygen.add_argument(
        "--force", action="store_true", help="replace an existing key pair of this name"
    )
    keygen.set_defaults(func=_cmd_catalog_keygen)
    sign = command(
        csub,
        "sign",
        "sign a catalog file into a publication (compact JWS)",
        "tongban catalog sign standards/catalog/2025.2.json "
        "--key keys/national-standards-body.key.pem --out 2025.2.jws",
    )
    sign.add_argument("catalog", help="the catalog JSON file")
    sign.add_argument("--key", required=True, help="the private key (NAME.key.pem of keygen)")
    sign.add_argument("--publisher", help="defaults to the catalog's publisher")
    sign.add_argument("--out", required=True, help="the publication file to write")
    sign.add_argument("--standards-dir", help=f"regions to check against; {STANDARDS_HELP}")
    sign.add_argument("--force", action="store_true", help="sign even if the catalog is invalid")
    sign.set_defaults(func=_cmd_catalog_sign)
    cdiff = command(
        csub,
        "diff",
        "diff two catalog files offline",
        "tongban catalog diff standards/catalog/2025.1.json standards/catalog/2025.2.json",
    )
    cdiff.add_argument("old", help="the older catalog JSON file")
    cdiff.add_argument("new", help="the newer catalog JSON file")
    cdiff.add_argument("--standards-dir", help=STANDARDS_HELP)
    json_flag(cdiff)
    cdiff.set_defaults(func=_cmd_catalog_diff)
    hooks = Hooks(connect=_channel, client_flags=_client_tls_flags, env=os.environ)
    commands_catalog.register(sub, csub, hooks)
    commands_publish.register(csub, hooks)
    commands_stub.register(sub, hooks)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `tongban` with `argv` (default: the process's); returns its exit code (see
    `tools.exits`)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["region-stub"]:
        return _cmd_region_stub(argparse.Namespace(), args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    args.argv = args_list  # `gateway --workers N` starts each worker with the same command line
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        code = exits.exit_code(error)
        if code is None:
            raise
        if isinstance(error, exits.Refused):
            Output(json_mode=getattr(args, "json", False)).refused(
                error.rpc_error, getattr(args, "flags", NO_FLAGS)
            )
        else:
            for line in exits.explain(error):
                print(line, file=sys.stderr)
        return code
    return result


if __name__ == "__main__":
    raise SystemExit(main())
