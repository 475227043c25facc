"""Tests for gateway.catalog.wire: ResolveLocalCode's answer, written as bytes.

Every answer is compared byte for byte with the message `convert` builds. The snapshot holds
both bundled catalog versions and the lists of 440000 and 520000.
"""

from __future__ import annotations

from bundled import NOW, bundled_snapshot
from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from gateway.api.v1 import catalog_pb2
from gateway.catalog import convert, wire
from gateway.catalog.model import RegionCatalogDocument, RegionEntry
from gateway.catalog.region_index import RegionIndex
from gateway.catalog.resolution import Resolution, resolve
from gateway.errors import TongbanError

SNAPSHOT = bundled_snapshot()


def _built(r: Resolution) -> bytes:
    return catalog_pb2.ResolveLocalCodeResponse(resolved=convert.resolved(r)).SerializeToString()


def test_the_wire_answer_is_the_built_message_byte_for_byte_for_every_row() -> None:
    checked = 0
    for region_code, index in SNAPSHOT.region_indexes().items():
        for entry in index.document.entries:
            for national_code in entry.national_codes:
                for version in ("2025.1", "2025.2"):
                    try:
                        r = resolve(
                            SNAPSHOT,
                            region_code,
                            entry.local_code,
                            now=NOW,
                            national_code=national_code,
                            version=version,
                        )
                    except TongbanError:
                        continue  # retired, or not in that version: no answer to write
                    assert wire.resolve_response(r) == _built(r)
                    checked += 1
    assert checked > 100


ROW_TEXT = st.text(st.characters(codec="utf-8"), max_size=200)
"""What a row's text can be: any UTF-8 (a protobuf string), up to the lists' 200 characters."""


@given(
    local_code=st.text(st.characters(codec="utf-8", exclude_categories=("Z", "C")), min_size=1),
    local_name=ROW_TEXT,
    agency_name=ROW_TEXT,
)
def test_the_wire_answer_is_the_built_message_for_any_row_text(
    local_code: str, local_name: str, agency_name: str
) -> None:
    entry = RegionEntry(local_code[:128], ("000117112000",), local_name, agency_name, "", None)
    doc = RegionCatalogDocument("440000", (entry,))
    snapshot = SNAPSHOT.with_region(RegionIndex.build(doc, NOW, "generated"))
    r = resolve(snapshot, "440000", entry.local_code, now=NOW)
    assert wire.resolve_response(r) == _built(r)


def test_the_longest_row_text_in_four_byte_characters() -> None:
    widest = "\U00020000"  # CJK extension B: four bytes in UTF-8
    entry = RegionEntry(widest * 128, ("000117112000",), widest * 200, widest * 200, "", None)
    doc = RegionCatalogDocument("440000", (entry,))
    snapshot = SNAPSHOT.with_region(RegionIndex.build(doc, NOW, "widest"))
    r = resolve(snapshot, "440000", entry.local_code, now=NOW, version="2025.2")
    data = wire.resolve_response(r)
    assert data == _built(r)
    assert catalog_pb2.ResolveLocalCodeResponse.FromString(data).resolved.local_name == widest * 200


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_varint_is_protobufs(n: int) -> None:
    assert b"\x08" + wire.varint(n) == timestamp_pb2.Timestamp(seconds=n).SerializeToString()
