"""Checking and publishing catalogs and implementation lists: `tongban catalog validate`,
`tongban catalog publish` and `tongban catalog publish-list`.

Invariants:
- `validate` reports every problem of a file in one pass, each at its place, then one summary
  line: an implementation list's unreadable rows, unknown fields, rows the catalog cannot
  route and dirty rows together. A list is checked against `--against`, else the catalog in
  force: the newest file of `STANDARDS/catalog` whose effective time has passed (what a
  gateway seeded from those files and kept up to date serves; `publish-list --validate-only`
  asks a running gateway itself).
- `publish` sends a signed publication as it is, and signs an unsigned catalog file first with
  `--signing-key`, by default the development standards key of the `tongban up` whose data directory
  is `--data-dir`, the key that federation's gateway trusts.
- A list that cannot be read is not sent: its problems are shown as `validate` shows them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from gateway.api.v1 import catalog_pb2, catalog_pb2_grpc
from gateway.catalog import documents, signing
from gateway.catalog.model import CatalogDocument
from gateway.catalog.registry import load_provinces
from gateway.catalog.validation import RowWarning, check_region_catalog, dialect_warnings
from gateway.errors import FieldViolation
from gateway.security.pki import DEV_STANDARDS_BODY
from gateway.times import utc_now
from gateway.tools import exits, locate
from gateway.tools.commands import Connect, Hooks, command, gateway_flags, json_flag, run_call
from gateway.tools.commands_catalog import version_state
from gateway.tools.exits import CommandError
from gateway.tools.local_files import DEV_KEYS_DIR, read_federation
from gateway.tools.output import FlagMap, Output

_ROW = re.compile(r"entries\[(\d+)\]")


@dataclass(frozen=True)
class Problem:
    """One finding of `validate`: an error (the file is refused) or a warning."""

    field: str
    """JSON path in the file, e.g. `entries[3].agency_code`; empty for the whole document."""
    severity: str
    """`error` or `warning`."""
    reason: str
    description: str

    @property
    def row(self) -> int:
        """The row it is in; -1 for the document itself."""
        found = _ROW.match(self.field)
        return int(found.group(1)) if found else -1


def _problems(errors: Iterable[FieldViolation], warnings: Iterable[RowWarning]) -> list[Problem]:
    """The findings in the file's order: the document's first, then row by row, errors first."""
    found = [Problem(e.field, "error", e.reason, e.description) for e in errors]
    found += [
        Problem(f"entries[{w.entry_index}].{w.field}", "warning", w.reason, w.description)
        for w in warnings
    ]
    return sorted(found, key=lambda p: (p.row, p.severity != "error"))


def _show_problems(out: Output, problems: Sequence[Problem]) -> None:
    if problems:
        out.table(
            ["Where", "Severity", "Reason", "What"],
            [(p.field or "(document)", p.severity, p.reason, p.description) for p in problems],
        )


def catalog_in_force(standards_dir: Path, now: datetime) -> Path:
    """The newest catalog file of `standards_dir/catalog` in force at `now` (the oldest when
    none is yet)."""
    dated: list[tuple[datetime, Path]] = []
    for path in sorted((standards_dir / "catalog").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        effective = data.get("effective_time") if isinstance(data, dict) else None
        if isinstance(effective, str):
            dated.append((datetime.fromisoformat(effective), path))
    if not dated:
        raise FileNotFoundError(f"no catalog in {standards_dir / 'catalog'}")
    dated.sort()
    in_force = [path for effective, path in dated if effective <= now]
    return in_force[-1] if in_force else dated[0][1]


# -- validate ---------------------------------------------------------------------------------


def _validate(args: argparse.Namespace) -> int:
    out = Output(json_mode=args.json)
    standards = locate.standards_dir(args.standards_dir, args.hooks.env, Path.cwd())
    provinces = load_provinces(standards)
    loaded = documents.loads_json(Path(args.file).read_bytes())
    if loaded.value is None:
        problems = _problems(loaded.violations, ())
        return _finish(out, args.file, kind="document", rows=0, problems=problems, described={})
    data = loaded.value
    if data.get("kind") != documents.REGION_CATALOG_KIND:
        parsed = documents.parse_catalog(data, provinces)
        found = _problems(parsed.violations, ())
        doc = parsed.value
        described = {"version": doc.version, "matters": len(doc.matters)} if doc else {}
        return _finish(out, args.file, kind="catalog", rows=0, problems=found, described=described)
    against = Path(args.against) if args.against else catalog_in_force(standards, utc_now())
    catalog = documents.parse_catalog(json.loads(against.read_text("utf-8")), provinces)
    if catalog.value is None:
        out.note(f"tongban: the catalog to check against, {against}, is itself invalid:")
        problems = _problems(catalog.violations, ())
        return _finish(out, str(against), kind="catalog", rows=0, problems=problems, described={})
    rows = len(data["entries"]) if isinstance(data.get("entries"), list) else 0
    with out.progress(f"checking {rows} rows against catalog {catalog.value.version}"):
        found = check_list(data, catalog.value, provinces, utc_now().date())
    return _finish(
        out,
        args.file,
        kind="implementation list",
        rows=rows,
        problems=found,
        described={"against": {"version": catalog.value.version, "file": str(against)}},
    )


def check_list(
    data: Mapping[str, Any], catalog: CatalogDocument, provinces: Collection[str], today: date
) -> list[Problem]:
    """Every problem of a list's JSON object in one pass: what cannot be read, and what the
    gateway's check and the list's dialect say of the rows that can."""
    reading = documents.read_region_catalog(data, provinces)
    doc, rows = reading.document, reading.rows
    report = check_region_catalog(doc, catalog, today, rows=rows)
    warnings = [*report.warnings, *dialect_warnings(doc, provinces, rows=rows)]
    return _problems([*reading.violations, *report.errors], warnings)


def _finish(
    out: Output,
    path: str,
    *,
    kind: str,
    rows: int,
    problems: Sequence[Problem],
    described: Mapping[str, Any],
) -> int:
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if out.json_mode:
        out.data(
            {
                "file": path,
                "kind": kind,
                **({"rows": rows} if kind == "implementation list" else {}),
                **described,
                "ok": errors == 0,
                "errors": errors,
                "warnings": warnings,
                "problems": [
                    {
                        "field": p.field,
                        "severity": p.severity,
                        "reason": p.reason,
                        "description": p.description,
                    }
                    for p in problems
                ],
            }
        )
        return exits.OK if errors == 0 else exits.FAILED
    _show_problems(out, problems)
    if kind == "implementation list":
        against = described["against"]
        out.line(
            f"{path}: {rows} rows, {errors} error(s), {warnings} warning(s) "
            f"(checked against catalog {against['version']}, {against['file']})"
        )
    elif errors == 0 and described:
        out.line(
            f"{path}: catalog {described['version']}: {described['matters']} matters, no problems"
        )
    else:
        out.line(f"{path}: {errors} error(s)")
    return exits.OK if errors == 0 else exits.FAILED


# -- publish a catalog version ----------------------------------------------------------------


def _signing_key(args: argparse.Namespace) -> Path:
    """`--signing-key`, else the key of the `tongban up` whose data directory is `--data-dir`."""
    if args.signing_key:
        return Path(args.signing_key)
    data_dir = Path(args.data_dir or locate.data_dir(args.hooks.env))
    key = (read_federation(data_dir) or {}).get("standards_key", {})
    if isinstance(key, dict) and key.get("body") == args.body and key.get("private_key"):
        return Path(str(key["private_key"]))
    default = data_dir / DEV_KEYS_DIR / f"{args.body}.key.pem"
    if not default.exists():
        raise CommandError(
            f"{args.file} is an unsigned catalog and no key signs it (no {default}): give "
            "--signing-key, run `tongban up` (it makes that key), or sign it with "
            "`tongban catalog sign`"
        )
    return default


def _publication(args: argparse.Namespace, out: Output) -> str:
    """The signed publication of `args.file`: as it is, or the catalog file signed."""
    text = Path(args.file).read_text(encoding="utf-8").strip()
    if not text.startswith("{"):
        return text
    key = _signing_key(args)
    loaded = documents.loads_json(text)
    publisher = str((loaded.value or {}).get("publisher", args.body))
    out.note(f"signed with {key} as {publisher}")
    return signing.sign_catalog(text.encode(), signing.load_private_key(key), publisher)


async def _publish(args: argparse.Namespace, out: Output) -> int:
    signed = await asyncio.to_thread(_publication, args, out)
    request = catalog_pb2.PublishCatalogVersionRequest(
        signed_document=signed, validate_only=args.validate_only
    )
    connect: Connect = args.hooks.connect
    async with connect(args, "standards", args.body, chosen_by="--body") as channel:
        with out.progress("the gateway checks the catalog"):
            answer = await catalog_pb2_grpc.CatalogServiceStub(channel).PublishCatalogVersion(
                request, timeout=120
            )
    if out.json_mode:
        out.message(answer)
        return exits.OK
    v = answer.catalog_version
    effective = v.effective_time.ToDatetime()
    state = version_state(v.state)
    when = f"{effective:%Y-%m-%d %H:%M} UTC"
    if args.validate_only:
        fate = (
            f"would be SCHEDULED, and become current at {when}"
            if state == "SCHEDULED"
            else f"would become {state} at once (effective since {when})"
        )
        out.line(f"catalog {v.version} is valid and was not published: it {fate}")
    else:
        fate = (
            f"SCHEDULED, becomes current at {when}"
            if state == "SCHEDULED"
            else f"{state} (effective since {when})"
        )
        out.line(f"catalog {v.version} published: {fate}")
    out.line(f"  {v.matter_count} matters, {v.theme_count} themes, digest {v.content_digest[:16]}")
    d = answer.diff
    if d.from_version:
        out.line(
            f"  from {d.from_version}: {len(d.added_matter_codes)} added, "
            f"{len(d.removed_matter_codes)} removed, {len(d.changed_matters)} changed matters; "
            f"{len(d.added_theme_codes)} added, {len(d.removed_theme_codes)} removed, "
            f"{len(d.changed_themes)} changed themes"
        )
    if answer.impacts:
        out.table(
            ["Province", "Implements, removed", "Implements, changed"],
            [
                (
                    i.region_code,
                    ", ".join(i.removed_matter_codes) or "-",
                    ", ".join(i.changed_matter_codes) or "-",
                )
                for i in answer.impacts
            ],
            title="Implementation lists affected",
        )
    return exits.OK


# -- publish an implementation list -----------------------------------------------------------


def _list_request(
    args: argparse.Namespace, out: Output
) -> catalog_pb2.PublishRegionCatalogRequest | None:
    """The request publishing `args.file`; None (its problems shown) when it cannot be read."""
    loaded = documents.loads_json(Path(args.file).read_bytes())
    provinces = load_provinces(locate.standards_dir(args.standards_dir, args.hooks.env, Path.cwd()))
    reading = documents.read_region_catalog(loaded.value or {}, provinces)
    if loaded.violations or reading.violations:
        problems = _problems([*loaded.violations, *reading.violations], ())
        _show_problems(out, problems)
        out.note(
            f"tongban: {args.file} cannot be read ({len(problems)} problem(s)); nothing was sent. "
            f"`tongban catalog validate {args.file}` checks it all offline."
        )
        return None
    doc = reading.document
    entries = []
    with out.progress(f"reading {len(doc.entries)} rows", total=len(doc.entries)) as advance:
        for e in doc.entries:
            entries.append(
                catalog_pb2.RegionCatalogEntry(
                    local_code=e.local_code,
                    national_codes=e.national_codes,
                    local_name=e.local_name,
                    agency_name=e.agency_name,
                    agency_code=e.agency_code,
                    cancel_date=e.cancel_date.isoformat() if e.cancel_date else "",
                )
            )
            advance()
    return catalog_pb2.PublishRegionCatalogRequest(
        region_catalog=catalog_pb2.RegionCatalog(
            name=f"regions/{doc.region_code}/catalog", entries=entries
        ),
        validate_only=args.validate_only,
    )


async def _publish_list(args: argparse.Namespace, out: Output) -> int:
    args.flags = FlagMap(  # a refusal names the file's places
        {
            "region_catalog.name": f"region_code of {args.file}",
            "region_catalog.entries": f"{args.file}: entries",
            "entries": f"{args.file}: entries",
        }
    )
    request = await asyncio.to_thread(_list_request, args, out)
    if request is None:
        return exits.FAILED
    region_code = request.region_catalog.name.split("/")[1]
    entries = request.region_catalog.entries
    connect: Connect = args.hooks.connect
    async with connect(
        args, "region", region_code, chosen_by=f"region_code of {args.file}"
    ) as channel:
        with out.progress(f"the gateway checks {len(entries)} rows"):
            answer = await catalog_pb2_grpc.CatalogServiceStub(channel).PublishRegionCatalog(
                request, timeout=300
            )
    if out.json_mode:
        out.message(answer)
        return exits.OK
    listed = answer.region_catalog
    done = "is valid and was not published" if args.validate_only else "published"
    out.line(
        f"{region_code} implementation list {done}: {len(listed.entries)} rows, checked "
        f"against catalog {listed.catalog_version}, {len(answer.warnings)} warning(s)"
        + ("" if args.validate_only else f", digest {listed.content_digest[:16]}")
    )
    if answer.warnings:
        out.table(
            ["Row", "Field", "Reason", "What"],
            [(str(w.entry_index + 1), w.field, w.reason, w.description) for w in answer.warnings],
        )
    return exits.OK


# -- parsers ----------------------------------------------------------------------------------


def register(
    catalog_sub: argparse._SubParsersAction[argparse.ArgumentParser], hooks: Hooks
) -> None:
    """Adds `catalog validate`, `catalog publish` and `catalog publish-list`."""
    standards_help = (
        "regions and catalogs (default: "
        f"${locate.STANDARDS_DIR_ENV}, else the nearest standards/ here or above)"
    )
    validate = command(
        catalog_sub,
        "validate",
        "check a catalog or implementation list offline: every problem with its place, in one "
        "pass, then a summary line (exit 1 when there is an error)",
        "tongban catalog validate standards/implementations/510000.json",
    )
    validate.add_argument("file", metavar="FILE", help="a catalog or implementation list (JSON)")
    validate.add_argument(
        "--against",
        metavar="CATALOG",
        help="catalog file to check a list against (default: the newest in force in "
        "STANDARDS_DIR/catalog)",
    )
    validate.add_argument("--standards-dir", help=standards_help)
    json_flag(validate)
    validate.set_defaults(func=_validate, hooks=hooks)

    publish = command(
        catalog_sub,
        "publish",
        "publish a catalog version to a gateway: a signed publication as it is, a catalog file "
        "signed first (as the standards body --body)",
        "tongban catalog publish standards/catalog/2026.1.json --validate-only",
    )
    publish.add_argument(
        "file", metavar="FILE", help="a catalog file, or a publication (catalog sign --out)"
    )
    publish.add_argument(
        "--validate-only",
        action="store_true",
        help="check it and say the state it would have, without publishing",
    )
    publish.add_argument(
        "--signing-key",
        help="private key that signs a catalog file (default: the development standards key "
        "of `tongban up` in DATA_DIR/keys)",
    )
    publish.add_argument(
        "--data-dir",
        help=f"data directory of `tongban up` (default: ${locate.DATA_DIR_ENV}, else data)",
    )
    publish.add_argument(
        "--body",
        default=DEV_STANDARDS_BODY,
        help="the standards body whose certificate to present (default: %(default)s)",
    )
    gateway_flags(publish, hooks)
    publish.set_defaults(
        func=run_call(_publish), flags=FlagMap({"signed_document": "FILE"}), hooks=hooks
    )

    plist = command(
        catalog_sub,
        "publish-list",
        "publish (replace) a province's implementation list, as that province: dirty rows "
        "are accepted with a warning each, rows the catalog in force cannot route refuse it all",
        "tongban catalog publish-list standards/implementations/510000.json --validate-only",
    )
    plist.add_argument("file", metavar="FILE", help="the implementation list (JSON)")
    plist.add_argument(
        "--validate-only",
        action="store_true",
        help="check it against the gateway's catalog, without publishing",
    )
    plist.add_argument("--standards-dir", help=standards_help)
    gateway_flags(plist, hooks)
    plist.set_defaults(func=run_call(_publish_list), hooks=hooks)
