"""A catalog snapshot of the bundled data, shared by the catalog's test modules.

It holds both bundled catalog versions and the implementation lists of 440000 and 520000.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gateway.catalog.documents import parse_catalog, parse_region_catalog
from gateway.catalog.region_index import RegionIndex
from gateway.catalog.registry import load_provinces
from gateway.catalog.resolution import CatalogSnapshot, VersionRecord

STANDARDS = Path(__file__).resolve().parents[2] / "standards"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=8)))


def bundled_snapshot() -> CatalogSnapshot:
    """Both bundled versions and the lists of 440000 and 520000, published at `NOW`."""
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
