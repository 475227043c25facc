"""`tongban`: run the gateway and its local federation, act as a platform, manage catalogs.

This module is the only reader of `os.environ`: it merges the environment with the flags into
the mapping that `config.load_config` turns into a `GatewayConfig`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from grpc_status import rpc_status

from gateway.api.v1 import application_pb2, application_pb2_grpc, catalog_pb2, catalog_pb2_grpc
from gateway.app.config import DEFAULT_PORT, load_config
from gateway.catalog import codes, documents, signing
from gateway.catalog.diff import diff_catalogs
from gateway.catalog.registry import load_provinces
from gateway.catalog.validation import check_region_catalog
from gateway.errors import TongbanError, unpack_details
from gateway.observability.audit_log import AuditHead, verify_audit_log
from gateway.security.pki import DEV_OPS, DEV_STANDARDS_BODY
from gateway.times import utc_now
from gateway.tools.balancing import gateway_channel
from gateway.tools.conformance.command import add_command as add_conformance_command
from gateway.tools.federation import DEFAULT_REGIONS

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
        print("tongban gateway: --workers must be 1 or more", file=sys.stderr)
        return 2
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
    from gateway.storage.location import PostgresConfig
    from gateway.tools.local import run_local

    store = load_store(_env_flags(args, {"store": "TONGBAN_STORE"}))
    if args.replicas < 1:
        print("tongban up: --replicas must be 1 or more", file=sys.stderr)
        return 2
    if args.replicas > 1 and not isinstance(store, PostgresConfig):
        print(
            "tongban up: replicas share a PostgreSQL store: give --store postgresql://…",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(
        run_local(
            data_dir=Path(args.data_dir),
            standards_dir=Path(args.standards_dir),
            port=args.port,
            stub_base_port=args.stub_base_port,
            regions=args.regions.split(","),
            metrics_port=args.metrics_port,
            insecure=args.insecure,
            store=store,
            replicas=args.replicas,
        )
    )


def _cmd_region_stub(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from region_stubs.server import main as stub_main

    return stub_main(list(rest))


GATEWAY_HELP = "HOST:PORT, or several replicas' HOST:PORT,... (balanced, UNAVAILABLE retried)"
DEV_PKI_DIR = Path("data") / "pki"
"""Where `tongban up` keeps its development PKI (under its data dir)."""


def _channel(args: argparse.Namespace, role: str, name: str) -> grpc.aio.Channel:
    """A channel to `--gateway` (one address, or several replicas balanced call by call, see
    `tools.balancing`): mTLS with --ca/--cert/--key, else the dev PKI's certificate of
    `role`/`name` when `tongban up` made one, else plaintext (said on stderr)."""
    from gateway.security.tls import channel_credentials

    def plaintext() -> grpc.aio.Channel:
        target, options = _target(args.gateway, tls=False)
        return grpc.aio.insecure_channel(target, options=options)

    if args.insecure:
        return plaintext()
    if args.cert or args.key or args.ca:
        if not (args.cert and args.key and args.ca):
            raise SystemExit("tongban: --cert, --key and --ca go together")
        files = (Path(args.ca), Path(args.cert), Path(args.key))
    else:
        pki = Path(args.pki_dir)
        files = (
            pki / "ca.pem",
            pki / "clients" / f"{role}-{name}.pem",
            pki / "clients" / f"{role}-{name}.key",
        )
        if not all(f.exists() for f in files):
            print(
                f"tongban: no certificate for {role}/{name} under {pki}; calling in plaintext",
                file=sys.stderr,
            )
            return plaintext()
    target, options = _target(args.gateway, tls=True)
    return grpc.aio.secure_channel(target, channel_credentials(*files), options=options)


def _target(gateway: str, *, tls: bool) -> tuple[str, list[tuple[str, Any]]]:
    try:
        return gateway_channel(gateway, tls=tls)
    except ValueError as error:
        raise SystemExit(f"tongban: {error}") from None


def _print_error(error: grpc.aio.AioRpcError) -> None:
    status = rpc_status.from_call(error)
    out: dict[str, object] = {"code": error.code().name, "message": error.details()}
    if status is not None:
        out["details"] = [json.loads(json_format.MessageToJson(d)) for d in unpack_details(status)]
    print(json.dumps(out, ensure_ascii=False, indent=2), file=sys.stderr)


def summarize(app: application_pb2.Application) -> dict[str, object]:
    """A printable view of an application, the applicant's id masked."""
    data: dict[str, object] = json.loads(json_format.MessageToJson(app))
    applicant = data.get("applicant")
    if isinstance(applicant, dict) and "idNumber" in applicant:
        applicant["idNumber"] = codes.mask_citizen_id(app.applicant.id_number)
    return data


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
    async with _channel(args, "region", args.origin) as channel:
        stub = application_pb2_grpc.ApplicationServiceStub(channel)
        try:
            response = await stub.SubmitApplication(request, timeout=args.timeout)
        except grpc.aio.AioRpcError as error:
            _print_error(error)
            return 1
    print(json.dumps(summarize(response.application), ensure_ascii=False, indent=2))
    return 0


async def _status(args: argparse.Namespace) -> int:
    name = (
        args.application
        if args.application.startswith("applications/")
        else (f"applications/{args.application}")
    )
    role, _, identity = (args.as_identity or f"ops/{DEV_OPS}").partition("/")
    async with _channel(args, role, identity) as channel:
        stub = application_pb2_grpc.ApplicationServiceStub(channel)
        try:
            if args.watch:
                call = stub.WatchApplication(application_pb2.WatchApplicationRequest(name=name))
                async for item in call:
                    app = item.application
                    print(
                        application_pb2.ApplicationState.Name(app.state),
                        app.state_reason,
                        flush=True,
                    )
                return 0
            response = await stub.GetApplication(application_pb2.GetApplicationRequest(name=name))
        except grpc.aio.AioRpcError as error:
            _print_error(error)
            return 1
    print(json.dumps(summarize(response.application), ensure_ascii=False, indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway.tools.demo import run_demo

    return asyncio.run(run_demo(Path(args.standards_dir), keep=args.keep))


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
    parsed = documents.parse_catalog(loaded.value, load_provinces(Path(args.standards_dir)))
    if parsed.value is None and not args.force:
        _report(args.catalog, parsed.violations)
        print(
            f"tongban catalog sign: {args.catalog} has {len(parsed.violations)} problem(s); a "
            "gateway would refuse it. Fix them, or use --force to sign it anyway.",
            file=sys.stderr,
        )
        return 1
    publisher = args.publisher or str(loaded.value.get("publisher", ""))
    signed = signing.sign_catalog(document, signing.load_private_key(Path(args.key)), publisher)
    Path(args.out).write_text(signed, encoding="utf-8")
    print(json.dumps({"signed": args.out, "publisher": publisher}))
    return 0


async def _catalog_publish(args: argparse.Namespace, signed: str) -> int:
    async with _channel(args, "standards", args.body) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        try:
            response = await stub.PublishCatalogVersion(
                catalog_pb2.PublishCatalogVersionRequest(
                    signed_document=signed, validate_only=args.validate_only
                ),
                timeout=60,
            )
        except grpc.aio.AioRpcError as error:
            _print_error(error)
            return 1
    print(json_format.MessageToJson(response, ensure_ascii=False))
    return 0


def _cmd_catalog_diff(args: argparse.Namespace) -> int:
    provinces = load_provinces(Path(args.standards_dir))
    parsed = []
    for path in (args.old, args.new):
        loaded = documents.loads_json(Path(path).read_bytes())
        result = documents.parse_catalog(loaded.value or {}, provinces)
        if result.value is None:
            _report(path, loaded.violations or result.violations)
            return 1
        parsed.append(result.value)
    diff = diff_catalogs(parsed[0], parsed[1])
    print(
        json.dumps(
            {
                "from_version": diff.from_version,
                "to_version": diff.to_version,
                "added": list(diff.added),
                "removed": list(diff.removed),
                "changed": {code: list(elements) for code, elements in diff.changed},
            },
            ensure_ascii=False,
            indent=2,
        )
    )
    return 0


def _report(path: str, violations: Sequence[object]) -> None:
    for v in violations:
        print(
            f"{path}: {getattr(v, 'field', '') or '(document)'}: {getattr(v, 'reason', '')}: "
            f"{getattr(v, 'description', '')}"
        )


def _cmd_catalog_validate(args: argparse.Namespace) -> int:
    standards = Path(args.standards_dir)
    provinces = load_provinces(standards)
    loaded = documents.loads_json(Path(args.file).read_bytes())
    if loaded.value is None:
        _report(args.file, loaded.violations)
        return 1
    data = loaded.value
    if data.get("kind") == documents.REGION_CATALOG_KIND:
        region = documents.parse_region_catalog(data, provinces)
        if region.value is None:
            _report(args.file, region.violations)
            return 1
        catalog_path = Path(args.against) if args.against else standards / "catalog" / "2025.1.json"
        catalog = documents.parse_catalog(json.loads(catalog_path.read_text("utf-8")), provinces)
        if catalog.value is None:
            _report(str(catalog_path), catalog.violations)
            return 1
        report = check_region_catalog(region.value, catalog.value, utc_now().date())
        _report(args.file, report.errors)
        for w in report.warnings:
            print(
                f"{args.file}: entries[{w.entry_index}].{w.field}: warning {w.reason}: "
                f"{w.description}"
            )
        print(
            f"{len(region.value.entries)} rows, {len(report.errors)} error(s), "
            f"{len(report.warnings)} warning(s)"
        )
        return 0 if report.ok else 1
    parsed = documents.parse_catalog(data, provinces)
    if parsed.value is None:
        _report(args.file, parsed.violations)
        print(f"{len(parsed.violations)} problem(s)")
        return 1
    print(f"catalog {parsed.value.version}: {len(parsed.value.matters)} matters, no problems")
    return 0


# -- security commands ----------------------------------------------------------------------


def _cmd_certs(args: argparse.Namespace) -> int:
    from gateway.tools.local import dev_pki

    layout = dev_pki(Path(args.out_dir), args.regions.split(","))
    print(
        json.dumps(
            {
                "ca": str(layout.ca_cert),
                "gateway": str(layout.gateway.cert),
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


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    """One log: its verdict. Several (each replica's chain, or a directory of them): each
    one's verdict, and ok only if every chain is intact."""
    logs = _audit_logs(args.paths)
    if not logs:
        print(f"tongban: no audit logs (*.jsonl) in {', '.join(args.paths)}", file=sys.stderr)
        return 2
    anchors: dict[Path, AuditHead] = {}
    for item in args.expect_head or []:
        named, equals, head = item.rpartition("=")
        seq, _, digest = head.partition(":")
        matching = [p for p in logs if not equals or named in (str(p), p.name)]
        if len(matching) != 1:
            print(f"tongban: --expect-head {item}: name one of the logs", file=sys.stderr)
            return 2
        anchors[matching[0]] = AuditHead(int(seq), digest)
    verdicts = []
    for path in logs:
        try:
            verdicts.append({"path": str(path), **_verdict(path, anchors.get(path))})
        except OSError as error:
            print(f"tongban: cannot read {path}: {error}", file=sys.stderr)
            return 2
    ok = all(v["ok"] for v in verdicts)
    if len(args.paths) == 1 and len(logs) == 1 and not Path(args.paths[0]).is_dir():
        del verdicts[0]["path"]
        print(json.dumps(verdicts[0]))
    else:
        records = sum(int(str(v.get("records", 0))) for v in verdicts)
        print(json.dumps({"ok": ok, "records": records, "chains": verdicts}))
    return 0 if ok else 1


def _client_tls_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ca", help="CA certificate (PEM) the gateway's certificate chains to")
    parser.add_argument("--cert", help="client certificate (PEM)")
    parser.add_argument("--key", help="client private key (PEM)")
    parser.add_argument(
        "--pki-dir",
        default=str(DEV_PKI_DIR),
        help="dev PKI of `tongban up`, used when --cert is not given",
    )
    parser.add_argument("--insecure", action="store_true", help="plaintext (development only)")


# -- parser -------------------------------------------------------------------------------


def _version() -> str:
    try:
        return importlib_metadata.version("tongban")
    except importlib_metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The `tongban` command line."""
    parser = argparse.ArgumentParser(prog="tongban", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tongban {_version()}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="how much to log (any case; default INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the gateway with its local federation of region stubs")
    up.add_argument("--data-dir", default="data")
    up.add_argument("--standards-dir", default="standards")
    up.add_argument("--port", type=int, default=DEFAULT_PORT)
    up.add_argument("--stub-base-port", type=int, default=50061)
    up.add_argument("--metrics-port", type=int, default=9464)
    up.add_argument("--regions", default=",".join(DEFAULT_REGIONS))
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
        help="gateway replicas on consecutive ports from --port, sharing a PostgreSQL --store",
    )
    up.set_defaults(func=_cmd_up)

    certs = sub.add_parser("certs", help="create or refresh the development PKI")
    certs.add_argument("--out-dir", default=str(DEV_PKI_DIR))
    certs.add_argument("--regions", default=",".join(DEFAULT_REGIONS))
    certs.set_defaults(func=_cmd_certs)

    audit = sub.add_parser("audit", help="audit log tools")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    verify = asub.add_parser(
        "verify", help="check audit logs' hash chains (one per replica; a directory: every log)"
    )
    verify.add_argument("paths", nargs="+", metavar="path")
    verify.add_argument(
        "--expect-head",
        action="append",
        help="[LOG=]SEQ:HASH of a head kept elsewhere (LOG: which one, among several)",
    )
    verify.set_defaults(func=_cmd_audit_verify)

    gw = sub.add_parser("gateway", help="run the gateway alone (flags override TONGBAN_* env)")
    gw.add_argument("--config", help="a JSON file of TONGBAN_* keys")
    gw.add_argument("--host")
    gw.add_argument("--port", type=int)
    gw.add_argument("--data-dir")
    gw.add_argument(
        "--store",
        help="a SQLite file path or a postgresql:// URL (default: DATA_DIR/gateway.sqlite3)",
    )
    gw.add_argument("--standards-dir")
    gw.add_argument("--regions", help="CODE=HOST:PORT,...")
    gw.add_argument("--standards-keys", help="BODY=PUBLIC_KEY_PEM,...")
    gw.add_argument("--metrics-port", type=int)
    gw.add_argument("--tls-ca", help="CA that client certificates must chain to")
    gw.add_argument("--tls-cert", help="the gateway's certificate (reloaded on change)")
    gw.add_argument("--tls-key", help="the gateway's key")
    gw.add_argument(
        "--deny-serials", help="refused client certificate serials, hex, comma-separated"
    )
    gw.add_argument("--rate-limits", help="METHOD=RATE/BURST,... per caller (`*` for all)")
    gw.add_argument(
        "--insecure",
        action="store_const",
        const="true",
        help="plaintext, no identities, authorization skipped (development only)",
    )
    gw.add_argument(
        "--workers", type=int, default=1, help="processes serving one port (SO_REUSEPORT)"
    )
    gw.add_argument("--health-port", type=int, help="plaintext probe-only health port")
    gw.set_defaults(func=_cmd_gateway)

    migrate = sub.add_parser(
        "migrate", help="bring the store's schema to this version and print it, without serving"
    )
    migrate.add_argument("--store", help="a SQLite file path or a postgresql:// URL")
    migrate.add_argument("--data-dir", help="where the default SQLite file is")
    migrate.set_defaults(func=_cmd_migrate)

    sub.add_parser(
        "region-stub", help="run one region stub (see `tongban region-stub --help`)", add_help=False
    )

    apply = sub.add_parser("apply", help="submit an application as a provincial platform would")
    apply.add_argument("--gateway", default=f"127.0.0.1:{DEFAULT_PORT}", help=GATEWAY_HELP)
    apply.add_argument("--request-id")
    apply.add_argument("--origin", required=True, help="submitting province, e.g. 440000")
    apply.add_argument("--target", required=True, help="handling province, e.g. 510000")
    apply.add_argument("--local-code", required=True, help="matter code in the origin's dialect")
    apply.add_argument("--national-code", help="which national matter, for a merged local code")
    apply.add_argument("--id-type", choices=sorted(ID_TYPES), default="citizen")
    apply.add_argument("--id-number", required=True)
    apply.add_argument("--name", required=True)
    apply.add_argument("--field", action="append", help="KEY=VALUE form field")
    apply.add_argument("--paper", action="append", help="MATERIAL_ID[=DESCRIPTION]")
    apply.add_argument("--license", action="append", help="MATERIAL_ID=TOKEN or MATERIAL_ID=@FILE")
    apply.add_argument("--timeout", type=float, default=10.0)
    _client_tls_flags(apply)
    apply.set_defaults(func=lambda a: asyncio.run(_apply(a)))

    status = sub.add_parser("status", help="get (or --watch) an application")
    status.add_argument("application", help="application id or applications/{id}")
    status.add_argument("--gateway", default=f"127.0.0.1:{DEFAULT_PORT}", help=GATEWAY_HELP)
    status.add_argument("--watch", action="store_true")
    status.add_argument(
        "--as", dest="as_identity", help="dev PKI identity, e.g. region/440000 (default ops/ops)"
    )
    _client_tls_flags(status)
    status.set_defaults(func=lambda a: asyncio.run(_status(a)))

    add_conformance_command(sub)

    demo = sub.add_parser("demo", help="run a scripted journey on a fresh federation")
    demo.add_argument("--standards-dir", default="standards")
    demo.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    demo.set_defaults(func=_cmd_demo)

    catalog = sub.add_parser("catalog", help="tools for standards bodies")
    csub = catalog.add_subparsers(dest="catalog_command", required=True)
    keygen = csub.add_parser("keygen", help="create a signing key pair")
    keygen.add_argument("--name", required=True, help="the standards body's name")
    keygen.add_argument("--out-dir", default="keys")
    keygen.add_argument("--algorithm", choices=("EdDSA", "ES256"), default="EdDSA")
    keygen.add_argument(
        "--force", action="store_true", help="replace an existing key pair of this name"
    )
    keygen.set_defaults(func=_cmd_catalog_keygen)
    sign = csub.add_parser("sign", help="sign a catalog file into a publication (compact JWS)")
    sign.add_argument("catalog")
    sign.add_argument("--key", required=True)
    sign.add_argument("--publisher", help="defaults to the catalog's publisher")
    sign.add_argument("--out", required=True)
    sign.add_argument("--standards-dir", default="standards", help="regions to check against")
    sign.add_argument("--force", action="store_true", help="sign even if the catalog is invalid")
    sign.set_defaults(func=_cmd_catalog_sign)
    publish = csub.add_parser("publish", help="publish a signed catalog to a gateway")
    publish.add_argument("signed")
    publish.add_argument("--gateway", default=f"127.0.0.1:{DEFAULT_PORT}", help=GATEWAY_HELP)
    publish.add_argument("--validate-only", action="store_true")
    publish.add_argument("--body", default=DEV_STANDARDS_BODY, help="dev PKI standards body")
    _client_tls_flags(publish)
    publish.set_defaults(
        func=lambda a: asyncio.run(
            _catalog_publish(a, Path(a.signed).read_text(encoding="utf-8").strip())
        )
    )
    cdiff = csub.add_parser("diff", help="diff two catalog files offline")
    cdiff.add_argument("old")
    cdiff.add_argument("new")
    cdiff.add_argument("--standards-dir", default="standards")
    cdiff.set_defaults(func=_cmd_catalog_diff)
    validate = csub.add_parser("validate", help="check a catalog or implementation list offline")
    validate.add_argument("file")
    validate.add_argument("--against", help="catalog file to check a list against")
    validate.add_argument("--standards-dir", default="standards")
    validate.set_defaults(func=_cmd_catalog_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tongban` command."""
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
    except TongbanError as error:
        print(f"tongban: {error.reason}: {error.message}", file=sys.stderr)
        for v in error.field_violations:
            print(f"  {v.field}: {v.reason}: {v.description}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"tongban: no such file or directory: {error.filename}", file=sys.stderr)
        return 2
    except IsADirectoryError as error:
        print(f"tongban: a file was expected, not the directory {error.filename}", file=sys.stderr)
        return 2
    except PermissionError as error:
        print(
            f"tongban: not allowed to open {error.filename}: check its permissions", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    raise SystemExit(main())
