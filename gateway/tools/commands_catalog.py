"""Reading the catalog a gateway serves: `tongban matters list|search|show`, `tongban themes
list|show`, `tongban resolve` and `tongban catalog versions` (CatalogService's read RPCs).

Every command reads as the operator of the development PKI unless `--as` names another identity
(the catalog is open to every authenticated caller), walks every page of a list, and prints a
table or, with `--json`, the response messages (all pages in one).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime

import grpc

from gateway.api.v1 import catalog_pb2, catalog_pb2_grpc
from gateway.security.pki import DEV_OPS
from gateway.tools.commands import Connect, Hooks, command, gateway_flags, run_call
from gateway.tools.output import FlagMap, Output

MATTER_TYPES = {
    f"{value.number:02d}": catalog_pb2.MatterType.ValueType(value.number)
    for value in catalog_pb2.MatterType.DESCRIPTOR.values
    if value.number
}
"""`--type` values: the standard's two-digit codes."""
TYPE_NAMES = {
    1: "行政许可",
    2: "行政处罚",
    3: "行政强制",
    4: "行政征收",
    5: "行政给付",
    6: "行政检查",
    7: "行政确认",
    8: "行政奖励",
    9: "行政裁决",
    10: "其他行政权力",
    20: "公共服务",
}
MODES = {
    "fully-online": catalog_pb2.CROSS_REGION_MODE_FULLY_ONLINE,
    "proxy-receive": catalog_pb2.CROSS_REGION_MODE_PROXY_RECEIVE,
    "multi-region": catalog_pb2.CROSS_REGION_MODE_MULTI_REGION,
}
"""`--mode` values."""
PAGE = 500

VERSION_FLAGS = FlagMap({"parent": "--version", "name": "--version"})
MATTER_FLAGS = FlagMap({"name": "CODE or --version"})
THEME_FLAGS = FlagMap({"name": "CODE or --version", "parent": "--version"})
LIST_FLAGS = FlagMap({"parent": "--version", "type": "--type", "cross_region_mode": "--mode"})
RESOLVE_FLAGS = FlagMap(
    {
        "region_code": "--region",
        "local_code": "LOCAL_CODE",
        "national_code": "--national-code",
        "catalog_version": "--version",
    }
)


def _connect(args: argparse.Namespace) -> AbstractAsyncContextManager[grpc.aio.Channel]:
    role, _, name = (args.as_identity or f"ops/{DEV_OPS}").partition("/")
    connect: Connect = args.hooks.connect
    return connect(args, role, name, chosen_by="--as")


def _name(args: argparse.Namespace) -> str:
    return f"catalogVersions/{args.version or '-'}"


def _type_label(number: int) -> str:
    return f"{number:02d} {TYPE_NAMES.get(number, '')}".strip()


def _modes(modes: Iterable[catalog_pb2.CrossRegionMode.ValueType]) -> str:
    return ", ".join(
        catalog_pb2.CrossRegionMode.Name(m).removeprefix("CROSS_REGION_MODE_") for m in modes
    )


def _limit(limit: catalog_pb2.TimeLimit) -> str:
    unit = catalog_pb2.TimeLimitUnit.Name(limit.unit).removeprefix("TIME_LIMIT_UNIT_")
    return f"{limit.value} {unit.lower().replace('_', ' ')}"


def _when(stamp: object) -> str:
    moment: datetime = stamp.ToDatetime()  # type: ignore[attr-defined]
    return f"{moment:%Y-%m-%d %H:%M} UTC"


# -- matters ----------------------------------------------------------------------------------


async def _all_matters(
    stub: catalog_pb2_grpc.CatalogServiceStub, args: argparse.Namespace
) -> list[catalog_pb2.Matter]:
    request = catalog_pb2.ListMattersRequest(
        parent=_name(args),
        page_size=PAGE,
        type=MATTER_TYPES.get(
            getattr(args, "type", None) or "", catalog_pb2.MATTER_TYPE_UNSPECIFIED
        ),
        cross_region_mode=MODES.get(
            getattr(args, "mode", None) or "", catalog_pb2.CROSS_REGION_MODE_UNSPECIFIED
        ),
    )
    matters: list[catalog_pb2.Matter] = []
    while True:
        page = await stub.ListMatters(request, timeout=30)
        matters.extend(page.matters)
        if not page.next_page_token:
            return matters
        request.page_token = page.next_page_token


def _show_matters(out: Output, matters: Sequence[catalog_pb2.Matter], what: str) -> None:
    if out.json_mode:
        out.message(catalog_pb2.ListMattersResponse(matters=matters, total_size=len(matters)))
        return
    version = matters[0].name.split("/")[1] if matters else ""
    out.table(
        ["Code", "Name", "Type", "Cross-region modes"],
        [
            (m.code, m.display_name, _type_label(m.type), _modes(m.cross_region_modes))
            for m in matters
        ],
        title=f"{len(matters)} {what}" + (f" in catalog {version}" if version else ""),
    )


async def _matters_list(args: argparse.Namespace, out: Output) -> int:
    async with _connect(args) as channel:
        matters = await _all_matters(catalog_pb2_grpc.CatalogServiceStub(channel), args)
    _show_matters(out, matters, "matters")
    return 0


async def _matters_search(args: argparse.Namespace, out: Output) -> int:
    async with _connect(args) as channel:
        matters = await _all_matters(catalog_pb2_grpc.CatalogServiceStub(channel), args)
    text = args.text.casefold()
    found = [m for m in matters if text in m.code or text in m.display_name.casefold()]
    _show_matters(out, found, f"matters matching {args.text!r}")
    return 0


async def _matters_show(args: argparse.Namespace, out: Output) -> int:
    async with _connect(args) as channel:
        answer = await catalog_pb2_grpc.CatalogServiceStub(channel).GetMatter(
            catalog_pb2.GetMatterRequest(name=f"{_name(args)}/matters/{args.code}"), timeout=30
        )
    if out.json_mode:
        out.message(answer)
        return 0
    m = answer.matter
    out.fields(
        [
            ("Matter", f"{m.code} {m.display_name}"),
            ("Catalog", m.name.split("/")[1]),
            ("Type", _type_label(m.type)),
            ("Department", m.competent_department),
            ("Cross-region", _modes(m.cross_region_modes) or "not handled across provinces"),
            (
                "Time limits",
                f"legal {_limit(m.legal_time_limit)}, promised {_limit(m.promised_time_limit)}",
            ),
            ("Serves", ", ".join(m.service_objects)),
        ]
    )
    if m.materials:
        out.table(
            ["Material", "Name", "Required", "E-licence type"],
            [
                (x.id, x.display_name, "yes" if x.required else "no", x.license_type_code or "-")
                for x in m.materials
            ],
        )
    if m.form_fields:
        out.table(
            ["Form field", "Type", "Required"],
            [(f.name, f.type, "yes" if f.required else "no") for f in m.form_fields],
        )
    return 0


# -- themes -----------------------------------------------------------------------------------


async def _themes_list(args: argparse.Namespace, out: Output) -> int:
    request = catalog_pb2.ListThemesRequest(parent=_name(args), page_size=PAGE)
    themes: list[catalog_pb2.Theme] = []
    async with _connect(args) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        while True:
            page = await stub.ListThemes(request, timeout=30)
            themes.extend(page.themes)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
    if out.json_mode:
        out.message(catalog_pb2.ListThemesResponse(themes=themes, total_size=len(themes)))
        return 0
    version = themes[0].name.split("/")[1] if themes else ""
    out.table(
        ["Code", "Name", "Members", "Promised"],
        [
            (
                t.code,
                t.display_name,
                " → ".join(f"{m.id} ({m.role})" for m in t.members),
                _limit(t.promised_time_limit),
            )
            for t in themes
        ],
        title=f"{len(themes)} themes (一件事)" + (f" in catalog {version}" if version else ""),
    )
    return 0


async def _themes_show(args: argparse.Namespace, out: Output) -> int:
    async with _connect(args) as channel:
        answer = await catalog_pb2_grpc.CatalogServiceStub(channel).GetTheme(
            catalog_pb2.GetThemeRequest(name=f"{_name(args)}/themes/{args.code}"), timeout=30
        )
    if out.json_mode:
        out.message(answer)
        return 0
    t = answer.theme
    out.fields(
        [
            ("Theme", f"{t.code} {t.display_name}"),
            ("Catalog", t.name.split("/")[1]),
            ("What it does", t.description),
            ("Promised", _limit(t.promised_time_limit)),
        ]
    )
    out.table(
        ["Member", "Matter", "Province's role", "After"],
        [(m.id, m.matter_code, m.role, ", ".join(m.after_member_ids) or "-") for m in t.members],
    )
    if t.form_fields:
        out.table(
            ["Form field", "Label", "Type", "Required", "Fills"],
            [
                (
                    f.name,
                    f.display_name,
                    f.type,
                    "yes" if f.required else "no",
                    ", ".join(f"{x.member_id}.{x.field}" for x in f.mappings),
                )
                for f in t.form_fields
            ],
        )
    if t.materials:
        out.table(
            ["Material", "Name", "E-licence type", "Used by"],
            [
                (
                    x.id,
                    x.display_name,
                    x.license_type_code or "-",
                    ", ".join(f"{u.member_id}.{u.material_id}" for u in x.used_by),
                )
                for x in t.materials
            ],
        )
    if t.data_flows:
        out.table(
            ["Licence type", "From", "To"],
            [
                (
                    f.license_type_code,
                    f.source_member_id or f"fetched from the {f.fetch_role} province",
                    f"{f.to.member_id}.{f.to.material_id}",
                )
                for f in t.data_flows
            ],
        )
    return 0


# -- resolve and versions ---------------------------------------------------------------------


async def _resolve(args: argparse.Namespace, out: Output) -> int:
    request = catalog_pb2.ResolveLocalCodeRequest(
        region_code=args.region,
        local_code=args.local_code,
        national_code=args.national_code or "",
        catalog_version=args.version or "",
    )
    async with _connect(args) as channel:
        answer = await catalog_pb2_grpc.CatalogServiceStub(channel).ResolveLocalCode(
            request, timeout=30
        )
    if out.json_mode:
        out.message(answer)
        return 0
    r = answer.resolved
    out.fields(
        [
            ("Province", r.region_code),
            ("Local code", r.local_code),
            ("Local name", r.local_name),
            ("Agency", r.agency_name or "-"),
            ("National matter", f"{r.matter.code} {r.matter.display_name}"),
            ("Mapping", catalog_pb2.MappingShape.Name(r.shape).removeprefix("MAPPING_SHAPE_")),
            ("Catalog", r.catalog_version),
        ]
    )
    return 0


def version_state(state: catalog_pb2.CatalogVersionState.ValueType) -> str:
    """`CURRENT` for CATALOG_VERSION_STATE_CURRENT."""
    return catalog_pb2.CatalogVersionState.Name(state).removeprefix("CATALOG_VERSION_STATE_")


async def _versions(args: argparse.Namespace, out: Output) -> int:
    request = catalog_pb2.ListCatalogVersionsRequest(page_size=200)
    versions: list[catalog_pb2.CatalogVersion] = []
    async with _connect(args) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        while True:
            page = await stub.ListCatalogVersions(request, timeout=30)
            versions.extend(page.catalog_versions)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
    if out.json_mode:
        out.message(catalog_pb2.ListCatalogVersionsResponse(catalog_versions=versions))
        return 0
    out.table(
        ["Version", "State", "Effective", "Published", "Matters", "Themes", "Publisher"],
        [
            (
                v.version,
                version_state(v.state),
                _when(v.effective_time),
                _when(v.publish_time),
                str(v.matter_count),
                str(v.theme_count),
                v.publisher,
            )
            for v in versions
        ],
        title="Catalog versions, newest first",
    )
    return 0


# -- parsers ----------------------------------------------------------------------------------


def _reader(parser: argparse.ArgumentParser, hooks: Hooks, *, version: bool = True) -> None:
    gateway_flags(parser, hooks)
    parser.add_argument(
        "--as",
        dest="as_identity",
        metavar="ROLE/NAME",
        help=f"the identity to call as, e.g. region/440000 (default: ops/{DEV_OPS})",
    )
    if version:
        parser.add_argument(
            "--version", help="catalog version, e.g. 2025.2 (default: the one in force)"
        )
    parser.set_defaults(hooks=hooks)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    catalog_sub: argparse._SubParsersAction[argparse.ArgumentParser],
    hooks: Hooks,
) -> None:
    """Adds `matters`, `themes`, `resolve` and `catalog versions`."""
    matters = command(
        sub, "matters", "list, search or show the national matters", "tongban matters list"
    )
    msub = matters.add_subparsers(dest="matters_command", required=True)
    mlist = command(
        msub,
        "list",
        "every matter of a catalog version, in code order",
        "tongban matters list --mode fully-online",
    )
    _reader(mlist, hooks)
    mlist.add_argument(
        "--type",
        choices=sorted(MATTER_TYPES),
        help="only this 事项类型 (01 行政许可 … 20 公共服务)",
    )
    mlist.add_argument(
        "--mode", choices=sorted(MODES), help="only matters offering this cross-region mode"
    )
    mlist.set_defaults(func=run_call(_matters_list), flags=LIST_FLAGS)
    search = command(
        msub,
        "search",
        "matters whose code or name contains TEXT (any case)",
        "tongban matters search 户口",
    )
    search.add_argument("text", metavar="TEXT", help="part of a matter's code or name")
    _reader(search, hooks)
    search.set_defaults(func=run_call(_matters_search), flags=VERSION_FLAGS)
    show = command(
        msub,
        "show",
        "one matter by its 12-digit national code, with its materials and form",
        "tongban matters show 002035011000",
    )
    show.add_argument("code", metavar="CODE", help="the national basic code")
    _reader(show, hooks)
    show.set_defaults(func=run_call(_matters_show), flags=MATTER_FLAGS)

    themes = command(sub, "themes", "list or show the themes (一件事)", "tongban themes list")
    tsub = themes.add_subparsers(dest="themes_command", required=True)
    tlist = command(tsub, "list", "every theme of a catalog version", "tongban themes list")
    _reader(tlist, hooks)
    tlist.set_defaults(func=run_call(_themes_list), flags=VERSION_FLAGS)
    tshow = command(
        tsub,
        "show",
        "one theme: its members, form, materials and data flows",
        "tongban themes show YJS0001",
    )
    tshow.add_argument("code", metavar="CODE", help="the theme's code")
    _reader(tshow, hooks)
    tshow.set_defaults(func=run_call(_themes_show), flags=THEME_FLAGS)

    resolve = command(
        sub,
        "resolve",
        "resolve a province's local matter code to the national matter it implements",
        "tongban resolve --region 510000 51200268000000-510000000000-000-11510000MBHU4N6YXE-1-00",
    )
    resolve.add_argument("local_code", metavar="LOCAL_CODE", help="the province's own code")
    resolve.add_argument("--region", required=True, help="the province's code, e.g. 510000")
    resolve.add_argument(
        "--national-code", help="which national matter, when the local code covers several"
    )
    _reader(resolve, hooks)
    resolve.set_defaults(func=run_call(_resolve), flags=RESOLVE_FLAGS)

    versions = command(
        catalog_sub,
        "versions",
        "the catalog versions a gateway holds, newest first, each SCHEDULED, CURRENT or SUPERSEDED",
        "tongban catalog versions",
    )
    _reader(versions, hooks, version=False)
    versions.set_defaults(func=run_call(_versions), flags=VERSION_FLAGS)
