"""Tests for gateway.catalog.convert: resolutions in their API form.

The snapshot holds both bundled catalog versions and the lists of 440000 and 520000.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gateway.api.v1 import catalog_pb2
from gateway.catalog import convert
from gateway.catalog.documents import parse_catalog, parse_region_catalog
from gateway.catalog.region_index import RegionIndex
from gateway.catalog.registry import load_provinces
from gateway.catalog.resolution import CatalogSnapshot, VersionRecord, resolve, targets

STANDARDS = Path(__file__).resolve().parents[2] / "standards"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=8)))


def _snapshot() -> CatalogSnapshot:
    provinces = load_provinces(STANDARDS)
    snapshot = CatalogSnapshot(provinces)
    for version in ("2025.1", "2025.2"):
        text = (STANDARDS / "catalog" / f"{version}.json").read_text("utf-8")
        doc = parse_catalog(json.loads(text), provinces).value
        assert doc is not None
        snapshot = snapshot.with_version(VersionRecord(doc, NOW, version))
    for code in ("440000", "520000"):
        text = (STANDARDS / "implementations" / f"{code}.json").read_text("utf-8")
        region = parse_region_catalog(json.loads(text), provinces).value
        assert region is not None
        snapshot = snapshot.with_region(RegionIndex.build(region, NOW, code))
    return snapshot


SNAPSHOT = _snapshot()


def test_a_resolution_carries_its_row_and_the_matter_of_its_version() -> None:
    source = resolve(SNAPSHOT, "520000", "QR00803000", now=NOW)
    for r in (source, *targets(SNAPSHOT, source, "440000", now=NOW)):
        message = convert.resolved(r)
        entry = r.entry
        assert (message.region_code, message.local_code) == (r.region_code, entry.local_code)
        assert (message.local_name, message.agency_name) == (entry.local_name, entry.agency_name)
        assert message.matter == convert.matter(r.matter, r.version)
        assert message.shape == r.shape.value
        assert message.catalog_version == r.version


def test_a_matter_message_is_built_once_per_version_and_not_shared_across_versions() -> None:
    later = SNAPSHOT.version("2025.2", NOW)
    matter = later.document.matters["000117112000"]
    first = convert.matter_bytes(matter, "2025.2")
    assert convert.matter_bytes(matter, "2025.2") is first
    other = catalog_pb2.Matter.FromString(convert.matter_bytes(matter, "2025.1"))
    assert other.name == "catalogVersions/2025.1/matters/000117112000"
    assert catalog_pb2.Matter.FromString(first) == convert.matter(matter, "2025.2")
