"""Tests for gateway.catalog.service: the CatalogService RPCs on a real gateway.

One gateway per test, started on port 0 with its own store in tmp_path and the bundled catalog
and lists; no province stubs (the catalog answers on its own). Expected values come from the
bundled JSON files, or from the registry's own snapshot where a test checks that the wire
carries what the catalog decided.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import STANDARDS_BODY, World, rich_error, start_world
from google.protobuf.message import Message

from gateway.api.v1 import catalog_pb2
from gateway.catalog import convert, resolution, signing
from gateway.catalog.signing import PrivateKey

STANDARDS = Path(__file__).resolve().parents[2] / "standards"
REGION = "440000"


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


LIST = _read(STANDARDS / "implementations" / f"{REGION}.json")
BOOTSTRAP = _read(STANDARDS / "catalog" / "2025.1.json")
"""What a new gateway's store is seeded with."""
CATALOG = _read(STANDARDS / "catalog" / "2025.2.json")
"""A real successor of it, published in the tests as a standards body would."""


def _rows() -> dict[str, dict[str, Any]]:
    """The list's rows by local code, the first of a repeated code winning (as the index)."""
    rows: dict[str, dict[str, Any]] = {}
    for row in LIST["entries"]:
        rows.setdefault(row["local_code"], row)
    return rows


ROWS = _rows()
TODAY = datetime.now(UTC).date().isoformat()
LIVE = {c: r for c, r in ROWS.items() if not r["cancel_date"] or r["cancel_date"] >= TODAY}
ONE = next(c for c, r in LIVE.items() if len(r["national_codes"]) == 1)
MERGED = next(c for c, r in LIVE.items() if len(r["national_codes"]) > 1)
RETIRED = next(c for c, r in ROWS.items() if r["cancel_date"] and r["cancel_date"] < TODAY)


@pytest.fixture
def body_key() -> PrivateKey:
    return signing.generate_private_key()


@pytest.fixture
async def world(tmp_path: Path, body_key: PrivateKey) -> AsyncIterator[World]:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "body.pub.pem").write_bytes(signing.public_pem(body_key))
    async with start_world(
        tmp_path, regions=(), standards_keys={STANDARDS_BODY: keys / "body.pub.pem"}
    ) as w:
        yield w


async def failure(call: Any) -> tuple[grpc.StatusCode, str, dict[str, str], list[str]]:
    """A call that must fail: its code, reason, metadata and the fields its violations name."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    info, bad = rich_error(caught.value)
    fields = [v.field for v in bad.field_violations] if bad else []
    return caught.value.code(), info.reason, dict(info.metadata), fields


def resolve_request(local_code: str, **fields: str) -> catalog_pb2.ResolveLocalCodeRequest:
    return catalog_pb2.ResolveLocalCodeRequest(region_code=REGION, local_code=local_code, **fields)


# -- ResolveLocalCode and its batch form ---------------------------------------------------


async def test_every_live_row_resolves_to_its_names_and_matter(world: World) -> None:
    snapshot = world.gateway.registry.snapshot
    for local_code, row in LIVE.items():
        for national_code in row["national_codes"]:
            answer = await world.catalog.ResolveLocalCode(
                resolve_request(local_code, national_code=national_code)
            )
            got = answer.resolved
            assert (got.region_code, got.local_code) == (REGION, local_code)
            assert (got.local_name, got.agency_name) == (row["local_name"], row["agency_name"])
            assert got.matter.code == national_code
            assert got.catalog_version == "2025.1"  # the version in force
            # The shape and matter are the catalog's own answer, carried as it made it.
            expected = resolution.resolve(
                snapshot, REGION, local_code, now=datetime.now(UTC), national_code=national_code
            )
            assert got.shape == expected.shape.value
            assert got.matter == convert.matter(expected.matter, "2025.1")


async def test_the_batch_answers_as_single_calls_in_request_order(world: World) -> None:
    requests = [resolve_request(c, national_code=r["national_codes"][0]) for c, r in LIVE.items()]
    requests[3:3] = [resolve_request("NO-SUCH-CODE"), resolve_request(RETIRED)]
    batch = await world.catalog.BatchResolveLocalCodes(
        catalog_pb2.BatchResolveLocalCodesRequest(requests=requests)
    )
    assert len(batch.results) == len(requests)
    for request, result in zip(requests, batch.results, strict=True):
        if result.HasField("resolved"):
            single = await world.catalog.ResolveLocalCode(request)
            assert result.resolved == single.resolved
    reasons = [r.error_reason for r in batch.results if not r.HasField("resolved")]
    assert reasons == ["LOCAL_CODE_NOT_FOUND", "LOCAL_CODE_RETIRED"]
    assert batch.results[3].error_message  # says what is wrong, in words


@pytest.mark.parametrize("size", [0, 1001])
async def test_a_batch_holds_one_to_a_thousand(world: World, size: int) -> None:
    request = catalog_pb2.BatchResolveLocalCodesRequest(requests=[resolve_request(ONE)] * size)
    code, reason, _, fields = await failure(world.catalog.BatchResolveLocalCodes(request))
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        ["requests"],
    )


async def test_a_merged_row_needs_its_national_code_and_lists_the_candidates(
    world: World,
) -> None:
    candidates = ROWS[MERGED]["national_codes"]
    code, reason, metadata, _ = await failure(
        world.catalog.ResolveLocalCode(resolve_request(MERGED))
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LOCAL_CODE_AMBIGUOUS")
    assert metadata["candidates"].split(",") == candidates
    named = await world.catalog.ResolveLocalCode(
        resolve_request(MERGED, national_code=candidates[1])
    )
    assert named.resolved.matter.code == candidates[1]
    assert named.resolved.shape == catalog_pb2.MAPPING_SHAPE_ONE_TO_MANY
    code, reason, _, fields = await failure(
        world.catalog.ResolveLocalCode(resolve_request(MERGED, national_code="000117112000"))
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["national_code"])


@pytest.mark.parametrize(
    ("region_code", "local_code", "expected"),
    [
        (REGION, "NO-SUCH-CODE", (grpc.StatusCode.NOT_FOUND, "LOCAL_CODE_NOT_FOUND")),
        (REGION, RETIRED, (grpc.StatusCode.FAILED_PRECONDITION, "LOCAL_CODE_RETIRED")),
        ("990000", ONE, (grpc.StatusCode.NOT_FOUND, "REGION_NOT_FOUND")),
    ],
)
async def test_what_cannot_be_resolved_says_why(
    world: World, region_code: str, local_code: str, expected: tuple[grpc.StatusCode, str]
) -> None:
    request = catalog_pb2.ResolveLocalCodeRequest(region_code=region_code, local_code=local_code)
    code, reason, metadata, _ = await failure(world.catalog.ResolveLocalCode(request))
    assert (code, reason) == expected
    if reason == "LOCAL_CODE_RETIRED":
        assert metadata["cancel_date"] == ROWS[RETIRED]["cancel_date"]


@pytest.mark.parametrize(
    ("fields", "violated"),
    [
        ({"region_code": "", "local_code": ONE}, "region_code"),
        ({"region_code": "44000", "local_code": ONE}, "region_code"),
        ({"region_code": "44000X", "local_code": ONE}, "region_code"),
        ({"region_code": REGION, "local_code": ""}, "local_code"),
        ({"region_code": REGION, "local_code": "x" * 129}, "local_code"),
        ({"region_code": REGION, "local_code": "a\nb"}, "local_code"),
    ],
)
async def test_a_malformed_request_names_its_field(
    world: World, fields: dict[str, str], violated: str
) -> None:
    request = catalog_pb2.ResolveLocalCodeRequest(**fields)
    code, reason, _, named = await failure(world.catalog.ResolveLocalCode(request))
    assert (code, reason, named) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        [violated],
    )


async def test_an_older_version_is_answered_in_its_own_terms(
    world: World, body_key: PrivateKey
) -> None:
    await world.catalog.PublishCatalogVersion(publish(json.dumps(CATALOG).encode(), body_key))
    national = ROWS[ONE]["national_codes"][0]
    current = await world.catalog.ResolveLocalCode(resolve_request(ONE))
    assert current.resolved.catalog_version == "2025.2"
    older = await world.catalog.ResolveLocalCode(resolve_request(ONE, catalog_version="2025.1"))
    assert older.resolved.catalog_version == "2025.1"
    assert older.resolved.matter.name == f"catalogVersions/2025.1/matters/{national}"
    code, reason, _, _ = await failure(
        world.catalog.ResolveLocalCode(resolve_request(ONE, catalog_version="1999.1"))
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "CATALOG_VERSION_NOT_FOUND")


# -- TranslateLocalCode --------------------------------------------------------------------


async def test_translation_lists_the_target_rows_of_the_same_matter(world: World) -> None:
    national = ROWS[ONE]["national_codes"][0]
    for target in ("510000", "520000", "330000"):
        rows = _read(STANDARDS / "implementations" / f"{target}.json")["entries"]
        live = [
            r["local_code"]
            for r in rows
            if national in r["national_codes"]
            and (not r["cancel_date"] or r["cancel_date"] >= TODAY)
        ]
        request = catalog_pb2.TranslateLocalCodeRequest(
            from_region_code=REGION, local_code=ONE, to_region_code=target
        )
        if not live:
            code, reason, metadata, _ = await failure(world.catalog.TranslateLocalCode(request))
            assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "MATTER_NOT_IMPLEMENTED")
            assert metadata["national_code"] == national
            continue
        answer = await world.catalog.TranslateLocalCode(request)
        assert answer.source.local_code == ONE
        assert sorted(t.local_code for t in answer.targets) == sorted(dict.fromkeys(live))
        assert {t.matter.code for t in answer.targets} == {national}
        assert {t.region_code for t in answer.targets} == {target}


async def test_translation_checks_both_regions(world: World) -> None:
    request = catalog_pb2.TranslateLocalCodeRequest(
        from_region_code=REGION, local_code=ONE, to_region_code="51000"
    )
    code, _, _, fields = await failure(world.catalog.TranslateLocalCode(request))
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["to_region_code"])
    request.to_region_code = "990000"
    code, reason, metadata, _ = await failure(world.catalog.TranslateLocalCode(request))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "REGION_NOT_FOUND")
    assert metadata["field"] == "to_region_code"


# -- Versions, matters and diffs -----------------------------------------------------------


async def test_publishing_2025_2_reports_its_diff_and_impact_and_supersedes_2025_1(
    world: World, body_key: PrivateKey
) -> None:
    published = await world.catalog.PublishCatalogVersion(
        publish(json.dumps(CATALOG).encode(), body_key)
    )
    assert published.catalog_version.state == catalog_pb2.CATALOG_VERSION_STATE_CURRENT
    # the edits the 2025.2 file's provenance lists
    removed, added = ["000133021000", "002039011000"], ["000147021000", "002033031000"]
    changed = ["000737011003", "000743011000", "002031011000"]
    assert sorted(published.diff.removed_matter_codes) == removed
    assert sorted(published.diff.added_matter_codes) == added
    assert sorted(c.code for c in published.diff.changed_matters) == changed
    # Impact: each province whose list names a removed or changed matter, and no other.
    referenced: dict[str, set[str]] = {}
    for path in sorted((STANDARDS / "implementations").glob("*.json")):
        data = _read(path)
        codes = {n for e in data["entries"] for n in e["national_codes"]}
        if codes & {*removed, *changed}:
            referenced[data["region_code"]] = codes & {*removed, *changed}
    impacts = {
        i.region_code: {*i.removed_matter_codes, *i.changed_matter_codes} for i in published.impacts
    }
    assert impacts == referenced
    diff = await world.catalog.DiffCatalogVersions(
        catalog_pb2.DiffCatalogVersionsRequest(from_version="2025.1", to_version="2025.2")
    )
    assert diff.diff == published.diff
    listed = await world.catalog.ListCatalogVersions(catalog_pb2.ListCatalogVersionsRequest())
    assert [(v.version, v.state) for v in listed.catalog_versions] == [
        ("2025.2", catalog_pb2.CATALOG_VERSION_STATE_CURRENT),
        ("2025.1", catalog_pb2.CATALOG_VERSION_STATE_SUPERSEDED),
    ]


async def test_matters_are_listed_and_got_by_name(world: World) -> None:
    first = BOOTSTRAP["matters"][0]
    got = await world.catalog.GetMatter(
        catalog_pb2.GetMatterRequest(name=f"catalogVersions/2025.1/matters/{first['code']}")
    )
    assert (got.matter.code, got.matter.display_name) == (first["code"], first["name"])
    matters = await world.catalog.ListMatters(
        catalog_pb2.ListMattersRequest(parent="catalogVersions/-", page_size=500)
    )
    assert [m.code for m in matters.matters] == [m["code"] for m in BOOTSTRAP["matters"]]
    online = await world.catalog.ListMatters(
        catalog_pb2.ListMattersRequest(
            parent="catalogVersions/2025.1",
            cross_region_mode=catalog_pb2.CROSS_REGION_MODE_FULLY_ONLINE,
            page_size=500,
        )
    )
    expected = [
        m["code"] for m in BOOTSTRAP["matters"] if "FULLY_ONLINE" in m["cross_region_modes"]
    ]
    assert [m.code for m in online.matters] == expected
    assert 0 < online.total_size == len(expected) < len(BOOTSTRAP["matters"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("catalogVersions/2025.1/matters/0001171120", "INVALID_MATTER_CODE"),
        ("catalogVersions/2025.1/things/000117112000", "INVALID_REQUEST"),
        ("catalogVersions/2025.1/matters/000147021000", "MATTER_NOT_FOUND"),
        ("catalogVersions/2030.1/matters/000117112000", "CATALOG_VERSION_NOT_FOUND"),
    ],
)
async def test_get_matter_refuses_what_it_cannot_name(
    world: World, name: str, expected: str
) -> None:
    _, reason, _, _ = await failure(
        world.catalog.GetMatter(catalog_pb2.GetMatterRequest(name=name))
    )
    assert reason == expected


# -- Publishing ----------------------------------------------------------------------------


def successor(version: str, *, effective: datetime, drop: str = "") -> bytes:
    """2025.1 renamed `version`, effective at `effective`, without matter `drop`."""
    doc = dict(BOOTSTRAP, version=version, effective_time=effective.isoformat())
    doc["matters"] = [m for m in BOOTSTRAP["matters"] if m["code"] != drop]
    return json.dumps(doc, ensure_ascii=False).encode()


def publish(document: bytes, key: PrivateKey) -> catalog_pb2.PublishCatalogVersionRequest:
    signed = signing.sign_catalog(document, key, STANDARDS_BODY)
    return catalog_pb2.PublishCatalogVersionRequest(signed_document=signed)


async def test_a_signed_version_is_published_with_its_diff_and_impact(
    world: World, body_key: PrivateKey, tmp_path: Path
) -> None:
    national = ROWS[ONE]["national_codes"][0]
    soon = datetime.now(UTC) + timedelta(days=30)
    published = await world.catalog.PublishCatalogVersion(
        publish(successor("2026.1", effective=soon, drop=national), body_key)
    )
    assert published.catalog_version.state == catalog_pb2.CATALOG_VERSION_STATE_SCHEDULED
    assert list(published.diff.removed_matter_codes) == [national]
    impacted = {i.region_code: list(i.removed_matter_codes) for i in published.impacts}
    assert impacted[REGION] == [national]
    # Scheduled: until its effective time the current version still answers.
    answer = await world.catalog.ResolveLocalCode(resolve_request(ONE))
    assert answer.resolved.catalog_version == "2025.1"
    code, reason, _, _ = await failure(
        world.catalog.ResolveLocalCode(resolve_request(ONE, catalog_version="2026.1"))
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "MATTER_NOT_FOUND")


async def test_validate_only_reports_the_state_the_version_would_have(
    world: World, body_key: PrivateKey
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    future = datetime.now(UTC) + timedelta(days=30)
    for effective, state in [
        (past, catalog_pb2.CATALOG_VERSION_STATE_CURRENT),
        (future, catalog_pb2.CATALOG_VERSION_STATE_SCHEDULED),
    ]:
        request = publish(successor("2026.1", effective=effective), body_key)
        request.validate_only = True
        checked = await world.catalog.PublishCatalogVersion(request)
        assert checked.catalog_version.state == state
    listed = await world.catalog.ListCatalogVersions(catalog_pb2.ListCatalogVersionsRequest())
    assert [v.version for v in listed.catalog_versions] == ["2025.1"]  # nothing published


async def test_a_publication_survives_a_restart(tmp_path: Path, body_key: PrivateKey) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "body.pub.pem").write_bytes(signing.public_pem(body_key))
    config = {"regions": (), "standards_keys": {STANDARDS_BODY: keys / "body.pub.pem"}}
    now = datetime.now(UTC) - timedelta(minutes=1)
    async with start_world(tmp_path, **config) as world:  # type: ignore[arg-type]
        await world.catalog.PublishCatalogVersion(
            publish(successor("2026.1", effective=now), body_key)
        )
    async with start_world(tmp_path, **config) as again:  # type: ignore[arg-type]
        listed = await again.catalog.ListCatalogVersions(catalog_pb2.ListCatalogVersionsRequest())
        assert [v.version for v in listed.catalog_versions] == ["2026.1", "2025.1"]
        answer = await again.catalog.ResolveLocalCode(resolve_request(ONE))
        assert answer.resolved.catalog_version == "2026.1"


async def test_forged_replayed_and_rolled_back_publications_are_refused(
    world: World, body_key: PrivateKey
) -> None:
    later = datetime.now(UTC) + timedelta(days=1)
    document = successor("2026.1", effective=later)
    forged = publish(document, signing.generate_private_key())
    code, reason, _, _ = await failure(world.catalog.PublishCatalogVersion(forged))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "CATALOG_SIGNATURE_INVALID")
    genuine = publish(document, body_key)
    head, payload, signature = genuine.signed_document.split(".")
    tampered = catalog_pb2.PublishCatalogVersionRequest(
        signed_document=".".join((head, payload[:-4] + "AAAA", signature))
    )
    _, reason, _, _ = await failure(world.catalog.PublishCatalogVersion(tampered))
    assert reason == "CATALOG_SIGNATURE_INVALID"
    await world.catalog.PublishCatalogVersion(genuine)
    await world.catalog.PublishCatalogVersion(genuine)  # the same content again: a no-op
    other = publish(
        successor("2026.1", effective=later, drop=BOOTSTRAP["matters"][0]["code"]), body_key
    )
    code, reason, _, _ = await failure(world.catalog.PublishCatalogVersion(other))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "CATALOG_VERSION_CONFLICT")
    older = publish(successor("2025.9", effective=later), body_key)
    code, reason, _, _ = await failure(world.catalog.PublishCatalogVersion(older))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CATALOG_VERSION_ROLLBACK")
    listed = await world.catalog.ListCatalogVersions(catalog_pb2.ListCatalogVersionsRequest())
    assert [v.version for v in listed.catalog_versions] == ["2026.1", "2025.1"]


async def test_a_document_signed_by_one_body_for_another_is_refused(
    world: World, body_key: PrivateKey
) -> None:
    doc = json.loads(successor("2026.1", effective=datetime.now(UTC)))
    doc["publisher"] = "provincial-standards-body"
    request = publish(json.dumps(doc).encode(), body_key)
    code, reason, _, fields = await failure(world.catalog.PublishCatalogVersion(request))
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "CATALOG_INVALID",
        ["publisher"],
    )


def region_catalog(entries: list[dict[str, Any]]) -> catalog_pb2.RegionCatalog:
    return catalog_pb2.RegionCatalog(
        name=f"regions/{REGION}/catalog",
        catalog_version="2025.1",
        entries=[
            catalog_pb2.RegionCatalogEntry(
                local_code=e["local_code"],
                national_codes=e["national_codes"],
                local_name=e["local_name"],
                agency_name=e["agency_name"],
                agency_code=e["agency_code"],
                cancel_date=e["cancel_date"] or "",
            )
            for e in entries
        ],
    )


async def test_a_list_with_dirty_rows_is_published_with_a_warning_per_row(world: World) -> None:
    entries = [dict(e) for e in LIST["entries"]]
    entries[0]["agency_code"] = "MB2C9205-0"  # a legacy 9-character organisation code
    request = catalog_pb2.PublishRegionCatalogRequest(region_catalog=region_catalog(entries))
    published = await world.catalog.PublishRegionCatalog(request)
    assert [(w.entry_index, w.field) for w in published.warnings][:1] == [(0, "agency_code")]
    assert len(published.region_catalog.entries) == len(entries)
    answer = await world.catalog.ResolveLocalCode(resolve_request(entries[0]["local_code"]))
    assert answer.resolved.local_name == entries[0]["local_name"]


async def test_a_list_with_unroutable_rows_names_every_one_and_changes_nothing(
    world: World,
) -> None:
    entries = [dict(e) for e in LIST["entries"]]
    entries[2]["national_codes"] = ["000999999000"]  # in no catalog version
    entries[5] = dict(entries[4], national_codes=[entries[6]["national_codes"][0]])  # conflicting
    request = catalog_pb2.PublishRegionCatalogRequest(region_catalog=region_catalog(entries))
    code, reason, _, fields = await failure(world.catalog.PublishRegionCatalog(request))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REGION_CATALOG_INVALID")
    assert fields == ["entries[2].national_codes[0]", "entries[5].local_code"]
    before = await world.catalog.ResolveLocalCode(resolve_request(entries[2]["local_code"]))
    assert before.resolved.matter.code == LIST["entries"][2]["national_codes"][0]


async def test_a_list_with_malformed_and_unroutable_rows_names_them_all_in_one_refusal(
    world: World,
) -> None:
    entries = [dict(e) for e in LIST["entries"]]
    entries[1]["cancel_date"] = "2024-13-01"  # malformed
    entries[2]["national_codes"] = ["000999999000"]  # well formed, in no catalog version
    entries[4]["local_code"] = ""  # malformed
    request = catalog_pb2.PublishRegionCatalogRequest(region_catalog=region_catalog(entries))
    code, reason, _, fields = await failure(world.catalog.PublishRegionCatalog(request))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert fields == [
        "region_catalog.entries[1].cancel_date",
        "region_catalog.entries[4].local_code",
        "entries[2].national_codes[0]",
    ]


# -- Field checks: enums and bounds over the wire ------------------------------------------


async def violations_of(call: Any) -> tuple[grpc.StatusCode, str, list[tuple[str, str]]]:
    """A call that must fail: its code, ErrorInfo reason and (field, reason) violations."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    info, bad = rich_error(caught.value)
    found = [(v.field, v.reason) for v in bad.field_violations] if bad else []
    return caught.value.code(), info.reason, found


INVALID = (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
FULL_WIDTH = "４４００００"  # str.isdigit() says yes
NATIONAL = ROWS[ONE]["national_codes"][0]


def _list(
    name: str, *rows: catalog_pb2.RegionCatalogEntry
) -> catalog_pb2.PublishRegionCatalogRequest:
    return catalog_pb2.PublishRegionCatalogRequest(
        region_catalog=catalog_pb2.RegionCatalog(name=name, entries=rows), validate_only=True
    )


def _translate(**fields: str) -> catalog_pb2.TranslateLocalCodeRequest:
    values = {"from_region_code": REGION, "local_code": ONE, "to_region_code": "510000"}
    return catalog_pb2.TranslateLocalCodeRequest(**{**values, **fields})


FIELD_CASES: list[tuple[str, str, Message, list[tuple[str, str]]]] = [
    # ListMatters: an unknown type or mode used to answer an empty list
    (
        "type 11",
        "ListMatters",
        catalog_pb2.ListMattersRequest(parent="catalogVersions/-", type=11),  # type: ignore[arg-type]
        [("type", "UNKNOWN")],
    ),
    (
        "type -1",
        "ListMatters",
        catalog_pb2.ListMattersRequest(parent="catalogVersions/-", type=-1),  # type: ignore[arg-type]
        [("type", "UNKNOWN")],
    ),
    (
        "mode 4",
        "ListMatters",
        catalog_pb2.ListMattersRequest(parent="catalogVersions/-", cross_region_mode=4),  # type: ignore[arg-type]
        [("cross_region_mode", "UNKNOWN")],
    ),
    (
        "parent's version over its bound",
        "ListMatters",
        catalog_pb2.ListMattersRequest(parent="catalogVersions/" + "9" * 17),
        [("parent", "TOO_LONG")],
    ),
    (
        "version name of a megabyte",
        "GetCatalogVersion",
        catalog_pb2.GetCatalogVersionRequest(name="catalogVersions/" + "9" * 10**6),
        [("name", "TOO_LONG")],
    ),
    (
        "matter name's version over its bound",
        "GetMatter",
        catalog_pb2.GetMatterRequest(name=f"catalogVersions/{'9' * 17}/matters/{NATIONAL}"),
        [("name", "TOO_LONG")],
    ),
    (
        "theme name's version over its bound",
        "GetTheme",
        catalog_pb2.GetThemeRequest(name=f"catalogVersions/{'9' * 17}/themes/YJS0001"),
        [("name", "TOO_LONG")],
    ),
    (
        "theme code of a megabyte",
        "GetTheme",
        catalog_pb2.GetThemeRequest(name="catalogVersions/2025.1/themes/" + "Y" * 10**6),
        [("name", "TOO_LONG")],
    ),
    (
        "diff without a from version",
        "DiffCatalogVersions",
        catalog_pb2.DiffCatalogVersionsRequest(to_version="2025.1"),
        [("from_version", "MISSING")],
    ),
    (
        "diff to a version over its bound",
        "DiffCatalogVersions",
        catalog_pb2.DiffCatalogVersionsRequest(from_version="2025.1", to_version="9" * 17),
        [("to_version", "TOO_LONG")],
    ),
    # ResolveLocalCode: full-width digits used to pass str.isdigit() and be NOT_FOUND
    (
        "region in full width",
        "ResolveLocalCode",
        catalog_pb2.ResolveLocalCodeRequest(region_code=FULL_WIDTH, local_code=ONE),
        [("region_code", "BAD_REGION_CODE")],
    ),
    (
        "region a county",
        "ResolveLocalCode",
        catalog_pb2.ResolveLocalCodeRequest(region_code="440305", local_code=ONE),
        [("region_code", "NOT_A_PROVINCE")],
    ),
    (
        "national code of a megabyte",
        "ResolveLocalCode",
        resolve_request(ONE, national_code="0" * 10**6),
        [("national_code", "BASIC_CODE_BAD_LENGTH")],
    ),
    (
        "national code in full width",
        "ResolveLocalCode",
        resolve_request(ONE, national_code="０" * 12),
        [("national_code", "BASIC_CODE_BAD_CHARACTER")],
    ),
    (
        "catalog version over its bound",
        "ResolveLocalCode",
        resolve_request(ONE, catalog_version="9" * 17),
        [("catalog_version", "TOO_LONG")],
    ),
    (
        "every field at once",
        "ResolveLocalCode",
        catalog_pb2.ResolveLocalCodeRequest(
            region_code="44", local_code="x" * 129, national_code="1", catalog_version="9" * 17
        ),
        [
            ("region_code", "BAD_REGION_CODE"),
            ("local_code", "TOO_LONG"),
            ("national_code", "BASIC_CODE_BAD_LENGTH"),
            ("catalog_version", "TOO_LONG"),
        ],
    ),
    (
        "translation between malformed regions",
        "TranslateLocalCode",
        _translate(from_region_code=FULL_WIDTH, to_region_code="510100"),
        [("from_region_code", "BAD_REGION_CODE"), ("to_region_code", "NOT_A_PROVINCE")],
    ),
    (
        "translation of a local code of a megabyte",
        "TranslateLocalCode",
        _translate(local_code="x" * 10**6),
        [("local_code", "TOO_LONG")],
    ),
    (
        "translation with a bad national code and version",
        "TranslateLocalCode",
        _translate(national_code="X", catalog_version="9" * 17),
        [("national_code", "BASIC_CODE_BAD_LENGTH"), ("catalog_version", "TOO_LONG")],
    ),
    # PublishRegionCatalog: the region in the name is a province code like any other
    (
        "list for a full-width region",
        "PublishRegionCatalog",
        _list(f"regions/{FULL_WIDTH}/catalog"),
        [("region_catalog.name", "BAD_REGION_CODE")],
    ),
    (
        "list for a county",
        "PublishRegionCatalog",
        _list("regions/440305/catalog"),
        [("region_catalog.name", "NOT_A_PROVINCE")],
    ),
    (
        "list row with an unbounded national code",
        "PublishRegionCatalog",
        _list(
            f"regions/{REGION}/catalog",
            catalog_pb2.RegionCatalogEntry(local_code="L1", national_codes=[NATIONAL, "0" * 13]),
        ),
        [("region_catalog.entries[0].national_codes[1]", "TOO_LONG")],
    ),
]


async def test_every_rpc_refuses_unknown_enum_values_and_unbounded_strings(world: World) -> None:
    for label, method, request, expected in FIELD_CASES:
        call = getattr(world.catalog, method)(request)
        assert await violations_of(call) == (*INVALID, expected), label


async def test_fields_at_their_bounds_are_answered_by_the_catalog(world: World) -> None:
    c, pb = world.catalog, catalog_pb2
    resolved = await c.ResolveLocalCode(resolve_request(ONE, national_code=NATIONAL))
    assert resolved.resolved.matter.code == NATIONAL
    public = await c.ListMatters(
        pb.ListMattersRequest(parent="catalogVersions/-", type=pb.MATTER_TYPE_PUBLIC_SERVICE)
    )
    assert public.total_size > 0
    assert {m.type for m in public.matters} == {pb.MATTER_TYPE_PUBLIC_SERVICE}
    code, reason, _ = await violations_of(
        c.GetCatalogVersion(pb.GetCatalogVersionRequest(name="catalogVersions/" + "9" * 16))
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "CATALOG_VERSION_NOT_FOUND")
    code, reason, _ = await violations_of(
        c.ResolveLocalCode(pb.ResolveLocalCodeRequest(region_code="990000", local_code=ONE))
    )
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "REGION_NOT_FOUND")


# -- Themes --------------------------------------------------------------------------------

THEMED = _read(STANDARDS / "catalog" / "2026.1.json")
"""The bundled version with themes, published after 2025.2."""


async def _publish_themes(
    world: World, key: PrivateKey
) -> catalog_pb2.PublishCatalogVersionResponse:
    await world.catalog.PublishCatalogVersion(publish(json.dumps(CATALOG).encode(), key))
    published: catalog_pb2.PublishCatalogVersionResponse = (
        await world.catalog.PublishCatalogVersion(publish(json.dumps(THEMED).encode(), key))
    )
    return published


async def test_publishing_2026_1_reports_the_themes_it_adds(
    world: World, body_key: PrivateKey
) -> None:
    published = await _publish_themes(world, body_key)
    codes = [t["code"] for t in THEMED["themes"]]
    assert list(published.diff.added_theme_codes) == codes
    assert list(published.diff.removed_theme_codes) == []
    assert published.catalog_version.theme_count == len(codes) == 8


async def test_themes_are_listed_page_by_page_and_got_by_name(
    world: World, body_key: PrivateKey
) -> None:
    await _publish_themes(world, body_key)
    seen: list[str] = []
    token = ""
    while True:
        page = await world.catalog.ListThemes(
            catalog_pb2.ListThemesRequest(
                parent="catalogVersions/2026.1", page_size=3, page_token=token
            )
        )
        assert page.total_size == 8
        seen += [t.code for t in page.themes]
        token = page.next_page_token
        if not token:
            break
    assert seen == [t["code"] for t in THEMED["themes"]]
    got = await world.catalog.GetTheme(
        catalog_pb2.GetThemeRequest(name="catalogVersions/2026.1/themes/YJS0006")
    )
    raw = next(t for t in THEMED["themes"] if t["code"] == "YJS0006")
    theme = got.theme
    assert (theme.name, theme.display_name) == (
        "catalogVersions/2026.1/themes/YJS0006",
        raw["name"],
    )
    assert [(m.id, m.matter_code, m.role, list(m.after_member_ids)) for m in theme.members] == [
        (m["id"], m["matter_code"], m["role"], m["after"]) for m in raw["members"]
    ]
    assert [[(x.member_id, x.field) for x in f.mappings] for f in theme.form_fields] == [
        [(x["member"], x["field"]) for x in f["maps"]] for f in raw["form"]
    ]
    assert [(f.source_member_id, f.fetch_role, f.to.member_id) for f in theme.data_flows] == [
        (f.get("source", ""), f.get("fetch_role", ""), f["to"]["member"]) for f in raw["flows"]
    ]
    assert list(theme.synthetic_elements) == raw["synthetic"]
    matter = await world.catalog.GetMatter(
        catalog_pb2.GetMatterRequest(name="catalogVersions/2026.1/matters/002031021000")
    )
    assert [f.name for f in matter.matter.form_fields][:2] == ["gmsfhm", "xm"]
    assert len(matter.matter.result_license_type_codes) == 1


async def test_a_version_without_themes_lists_none(world: World) -> None:
    listed = await world.catalog.ListThemes(
        catalog_pb2.ListThemesRequest(parent="catalogVersions/2025.1")
    )
    assert (list(listed.themes), listed.total_size, listed.next_page_token) == ([], 0, "")


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        ("catalogVersions/2026.1/themes/YJS9999", grpc.StatusCode.NOT_FOUND, "THEME_NOT_FOUND"),
        (
            "catalogVersions/2026.1/matters/YJS0001",
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        ),
        (
            "catalogVersions/2030.1/themes/YJS0001",
            grpc.StatusCode.NOT_FOUND,
            "CATALOG_VERSION_NOT_FOUND",
        ),
    ],
)
async def test_get_theme_refuses_what_it_cannot_name(
    world: World, body_key: PrivateKey, name: str, code: grpc.StatusCode, expected: str
) -> None:
    await _publish_themes(world, body_key)
    got_code, reason, _, _ = await failure(
        world.catalog.GetTheme(catalog_pb2.GetThemeRequest(name=name))
    )
    assert (got_code, reason) == (code, expected)


async def test_a_catalog_with_a_broken_theme_is_refused_naming_each_place(
    world: World, body_key: PrivateKey
) -> None:
    await world.catalog.PublishCatalogVersion(publish(json.dumps(CATALOG).encode(), body_key))
    broken = json.loads(json.dumps(THEMED))
    broken["themes"][0]["members"][0]["after"] = ["in"]
    broken["themes"][3]["members"][1]["role"] = "elsewhere"
    code, reason, _, fields = await failure(
        world.catalog.PublishCatalogVersion(publish(json.dumps(broken).encode(), body_key))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CATALOG_INVALID")
    assert "themes[0].members[0].after" in fields
    assert "themes[3].members[1].role" in fields
