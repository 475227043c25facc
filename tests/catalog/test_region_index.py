"""Tests for gateway.catalog.region_index: a list in packed columns, and its builder.

Built from the bundled provincial lists and small inline ones; expected answers come from the
raw JSON or the inline rows, not from the index under test.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog.documents import parse_region_catalog
from gateway.catalog.model import RegionCatalogDocument, RegionEntry
from gateway.catalog.region_index import NEVER, PACK_MASK, IndexBuilder, RegionIndex

STANDARDS = Path(__file__).resolve().parents[2] / "standards"
CST = timezone(timedelta(hours=8))
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=CST)
PUBLISHED = datetime(2024, 12, 1, tzinfo=CST)


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


PROVINCES = {p["code"]: p["name"] for p in _read(STANDARDS / "regions.json")["provinces"]}
RAW_LISTS = {p.stem: _read(p) for p in sorted((STANDARDS / "implementations").glob("*.json"))}


@pytest.mark.parametrize("code", sorted(RAW_LISTS))
def test_the_index_gives_back_the_list_it_was_built_from(code: str) -> None:
    doc = parse_region_catalog(RAW_LISTS[code], PROVINCES).value
    assert doc is not None
    index = RegionIndex.build(doc, PUBLISHED, "d")
    assert index.document == doc
    assert len(index) == len(doc.entries)
    for row, entry in enumerate(doc.entries):
        assert index.entry(row) == entry
        assert index.local_code(row) == entry.local_code


def test_the_first_of_repeated_local_codes_wins_in_the_index() -> None:
    doc = RegionCatalogDocument(
        "440000",
        (
            RegionEntry("L", ("000117112000",), "first", "a", "c"),
            RegionEntry("L", ("000117112000",), "second", "a", "c"),
        ),
    )
    index = RegionIndex.build(doc, NOW, "d")
    assert index.by_local["L"].local_name == "first"
    assert len(index.by_national["000117112000"]) == 1


def test_live_rows_leave_out_exactly_the_retired_rows() -> None:
    doc = RegionCatalogDocument(
        "440000",
        (
            RegionEntry("A", ("000117112000",), "a", "x", "c", date(2025, 6, 30)),
            RegionEntry("B", ("000117112000",), "b", "x", "c"),
            RegionEntry("C", ("000117112000", "000117113000"), "c", "x", "c", date(2025, 7, 31)),
        ),
    )
    index = RegionIndex.build(doc, NOW, "d")
    rows = {
        day: [index.local_code(r) for r in index.live_rows("000117112000", day)]
        for day in (date(2025, 6, 30), date(2025, 7, 1), date(2025, 8, 1))
    }
    assert rows == {
        date(2025, 6, 30): ["A", "B", "C"],  # the cancel date itself is still live
        date(2025, 7, 1): ["B", "C"],
        date(2025, 8, 1): ["B"],
    }
    assert len(index.live_rows("000117112000", date(2025, 7, 1))) == 2
    assert len(index.live_rows("000117113000", date(2025, 8, 1))) == 0
    assert len(index.live_rows("000117114000", date(2025, 8, 1))) == 0
    assert set(index.national_codes()) == {"000117112000", "000117113000"}


def test_a_list_longer_than_a_row_key_can_hold_is_refused() -> None:
    builder = IndexBuilder()
    for row in range(PACK_MASK + 2):
        builder.add(f"L{row}", ("000117112000",), "n", ("a", "c"), NEVER)
    with pytest.raises(ValueError, match="at most"):
        builder.finish(RegionCatalogDocument("440000", ()), PUBLISHED, "d")
