"""Tests for gateway.catalog.convert: resolutions in their API form.

The snapshot holds both bundled catalog versions and the lists of 440000 and 520000.
"""

from __future__ import annotations

from bundled import NOW, bundled_snapshot

from gateway.api.v1 import catalog_pb2
from gateway.catalog import convert
from gateway.catalog.resolution import resolve, targets

SNAPSHOT = bundled_snapshot()


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
