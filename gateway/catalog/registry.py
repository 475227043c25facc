"""The catalog's owner: loads it from the store, publishes versions and lists, swaps snapshots.

Invariants:
- Versions are immutable and strictly increasing: the same version with other content is a
  conflict, an older version is a rollback; identical republication is a no-op.
- A publication is durable in the store before the new snapshot becomes visible, and the
  snapshot is swapped with one assignment: readers see all of it or none of it.
- Publications are serialized by one lock; reads never wait for it.
- Activation does not block readers: checking, encoding and indexing a list (and, on load,
  decoding and indexing a stored one) run in a worker thread, and the JSON is encoded in
  chunks, so the event loop gets the GIL back between chunks. Only the swap runs on
  the loop.
- The stored form of a list is its canonical JSON; its digest is the SHA-256 of that text. On
  load a list whose text still has its digest is indexed straight from the JSON (it was
  checked when published); any other is parsed and checked in full.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from gateway.catalog import documents
from gateway.catalog.diff import CatalogDiff, RegionImpact, diff_catalogs, impact_of_codes
from gateway.catalog.model import CatalogDocument, RegionCatalogDocument, version_key
from gateway.catalog.problems import Parsed
from gateway.catalog.region_index import NEVER, IndexBuilder, RegionIndex
from gateway.catalog.resolution import CatalogSnapshot, VersionRecord, require_region
from gateway.catalog.validation import RegionCatalogReport, RowWarning, check_region_catalog
from gateway.errors import (
    CatalogInvalid,
    CatalogVersionConflict,
    CatalogVersionRollback,
    FailedPrecondition,
    RegionCatalogInvalid,
)
from gateway.storage.base import CatalogStore, NewCatalogVersion, StoredDocument


def canonical_json(data: Any) -> str:
    """The canonical form whose SHA-256 is a document's digest."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def digest_of(data: Any) -> str:
    """Hex SHA-256 of the canonical JSON of `data`."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


_CHUNK = 2000
"""Rows per JSON encoding call: one call holds the GIL from start to end."""


def canonical_region_json(data: Mapping[str, Any]) -> str:
    """`canonical_json` of a list's JSON object, encoded in chunks of rows.

    Equal to `canonical_json(data)`: a JSON array is its items joined by commas, and the
    unescaped key `"entries":[]` can only be the key itself (a quote inside a string value is
    escaped).
    """
    entries = data["entries"]
    head = canonical_json({**data, "entries": []})
    before, _, after = head.partition('"entries":[]')
    parts = [canonical_json(entries[i : i + _CHUNK])[1:-1] for i in range(0, len(entries), _CHUNK)]
    return before + '"entries":[' + ",".join(p for p in parts if p) + "]" + after


def index_stored_region(
    text: str, publish_time: datetime, digest: str, provinces: Mapping[str, str]
) -> RegionIndex:
    """The index of a stored list; trusted when the text still has its digest."""
    if hashlib.sha256(text.encode("utf-8")).hexdigest() == digest:
        try:
            return _index_canonical(text, publish_time, digest)
        except (KeyError, TypeError, ValueError):
            pass  # not the form this version writes: parse it in full
    region = documents.parse_region_catalog(json.loads(text), provinces)
    if region.value is None:
        raise RegionCatalogInvalid(f"stored region list {digest[:12]} no longer parses")
    return RegionIndex.build(region.value, publish_time, digest)


_ENTRIES_KEY = '"entries":['


def _index_canonical(text: str, publish_time: datetime, digest: str) -> RegionIndex:
    """Indexes the canonical JSON of a list, decoding one row at a time.

    `json.loads` of a whole list holds the GIL until the whole list is decoded; row by row,
    the event loop gets it back at the next switch interval, and only one row's objects exist
    at a time.
    """
    decode = json.JSONDecoder().raw_decode
    builder = IndexBuilder()
    ordinals: dict[str | None, int] = {None: NEVER}
    start = text.index(_ENTRIES_KEY) + len(_ENTRIES_KEY)
    pos = start
    if text[pos] != "]":
        while True:
            e, pos = decode(text, pos)
            cancel = e["cancel_date"]
            ordinal = ordinals.get(cancel)
            if ordinal is None:
                ordinal = ordinals[cancel] = date.fromisoformat(cancel).toordinal()
            local, nationals = e["local_code"], tuple(e["national_codes"])
            if not local or not nationals:
                raise ValueError("a stored row without a local code or national codes")
            builder.add(
                local,
                nationals,
                e["local_name"],
                (e["agency_name"], e["agency_code"]),
                ordinal,
            )
            if text[pos] == "]":
                break
            if text[pos] != ",":
                raise ValueError(f"unexpected {text[pos]!r} at {pos} in a stored list")
            pos += 1
    data = json.loads(text[:start] + text[pos:])
    header = RegionCatalogDocument(
        data["region_code"],
        (),
        data["region_name"],
        data["dialect"],
        data["catalog_version"],
        data["provenance"],
    )
    return builder.finish(header, publish_time, digest)


def load_provinces(standards_dir: Path) -> dict[str, str]:
    """Province code → name from `standards/regions.json`."""
    data = json.loads((standards_dir / "regions.json").read_text(encoding="utf-8"))
    return {p["code"]: p["name"] for p in data["provinces"]}


@dataclass(frozen=True)
class VersionPublication:
    """The outcome of publishing a catalog version."""

    record: VersionRecord
    diff: CatalogDiff | None
    impacts: tuple[RegionImpact, ...]
    created: bool


@dataclass(frozen=True)
class RegionPublication:
    """The outcome of publishing an implementation list."""

    index: RegionIndex
    warnings: tuple[RowWarning, ...]


class CatalogRegistry:
    """Holds the current `CatalogSnapshot` and changes it through publications."""

    def __init__(
        self, store: CatalogStore, provinces: Mapping[str, str], clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.clock = clock
        self.snapshot = CatalogSnapshot(dict(provinces))
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Rebuilds the snapshot from the store."""
        provinces = self.snapshot.provinces
        snapshot = CatalogSnapshot(provinces)
        for stored_version in await self.store.catalog_versions():
            publish_time, digest = stored_version.publish_time, stored_version.digest
            parsed = await asyncio.to_thread(
                _parse_stored_catalog, stored_version.document, provinces
            )
            if parsed.value is None:
                raise CatalogInvalid(f"stored catalog {digest[:12]} no longer parses")
            snapshot = snapshot.with_version(
                VersionRecord(parsed.value, datetime.fromisoformat(publish_time), digest)
            )
        regions = {}
        for code in await self.store.region_catalog_codes():
            stored = await self.store.region_catalog(code)
            if stored is None:
                continue  # cannot happen: lists are replaced, never deleted
            index = await asyncio.to_thread(
                index_stored_region,
                stored.document,
                datetime.fromisoformat(stored.publish_time),
                stored.digest,
                provinces,
            )
            del stored
            regions[index.region_code] = index
        self.snapshot = CatalogSnapshot(provinces, snapshot.versions, regions)

    async def bootstrap(self, catalog_file: Path, implementations_dir: Path) -> bool:
        """Seeds an empty store with the bundled catalog and lists; False if not empty."""
        if self.snapshot.versions:
            return False
        data = json.loads(await asyncio.to_thread(catalog_file.read_text, encoding="utf-8"))
        parsed = documents.parse_catalog(data, self.snapshot.provinces)
        if parsed.value is None:
            raise CatalogInvalid(
                f"bundled catalog {catalog_file} is invalid", field_violations=parsed.violations
            )
        await self.publish_version(parsed.value, data, signed_document="")
        for path in await asyncio.to_thread(lambda: sorted(implementations_dir.glob("*.json"))):
            region_data = json.loads(await asyncio.to_thread(path.read_text, encoding="utf-8"))
            region = documents.parse_region_catalog(region_data, self.snapshot.provinces)
            if region.value is None:
                raise RegionCatalogInvalid(
                    f"bundled list {path} is invalid", field_violations=region.violations
                )
            await self.publish_region(region.value)
        return True

    async def publish_version(
        self,
        doc: CatalogDocument,
        data: Mapping[str, Any],
        *,
        signed_document: str,
        validate_only: bool = False,
    ) -> VersionPublication:
        """Publishes a parsed catalog version (its signature, if any, already verified)."""
        digest = digest_of(data)
        async with self._lock:
            snapshot = self.snapshot
            for record in snapshot.versions:
                if record.document.version == doc.version:
                    if record.digest != digest:
                        raise CatalogVersionConflict(
                            f"version {doc.version} was published with other content",
                            metadata={"version": doc.version},
                        )
                    return VersionPublication(record, None, (), created=False)
            latest = snapshot.latest()
            if latest is not None:
                if version_key(doc.version) <= version_key(latest.document.version):
                    raise CatalogVersionRollback(
                        f"version {doc.version} is not newer than {latest.document.version}",
                        metadata={"latest_version": latest.document.version},
                    )
                if doc.effective_time < latest.document.effective_time:
                    raise CatalogVersionRollback(
                        f"version {doc.version} takes effect before {latest.document.version}",
                        metadata={"latest_version": latest.document.version},
                    )
            diff = diff_catalogs(latest.document, doc) if latest else None
            used = {code: ix.national_codes() for code, ix in snapshot.region_indexes().items()}
            impacts = impact_of_codes(diff, used) if diff else ()
            record = VersionRecord(doc, self.clock(), digest)
            if validate_only:
                return VersionPublication(record, diff, impacts, created=False)
            await self.store.insert_catalog_version(
                NewCatalogVersion(
                    version=doc.version,
                    sort_key=_sort_int(doc.version),
                    effective_time=doc.effective_time.isoformat(),
                    publish_time=record.publish_time.isoformat(),
                    publisher=doc.publisher,
                    digest=digest,
                    document=canonical_json(data),
                    signed_document=signed_document,
                )
            )
            self.snapshot = self.snapshot.with_version(record)
            return VersionPublication(record, diff, impacts, created=True)

    async def publish_region(
        self, doc: RegionCatalogDocument, *, validate_only: bool = False
    ) -> RegionPublication:
        """Checks a list against the current catalog and, if routable, makes it live."""
        async with self._lock:
            snapshot = self.snapshot
            require_region(snapshot, doc.region_code, "region_catalog.name")
            record = snapshot.current(self.clock()) or snapshot.latest()
            if record is None:
                raise FailedPrecondition("no catalog version is published yet")
            publish_time = self.clock()
            report, index, text = await asyncio.to_thread(
                _prepare_region, doc, record.document, snapshot.provinces, publish_time
            )
            if not validate_only:
                await self.store.upsert_region_catalog(
                    doc.region_code, StoredDocument(publish_time.isoformat(), index.digest, text)
                )
                self.snapshot = self.snapshot.with_region(index)
            return RegionPublication(index, report.warnings)


def _parse_stored_catalog(text: str, provinces: Mapping[str, str]) -> Parsed[CatalogDocument]:
    return documents.parse_catalog(json.loads(text), provinces)


def _prepare_region(
    doc: RegionCatalogDocument,
    catalog: CatalogDocument,
    provinces: Mapping[str, str],
    publish_time: datetime,
) -> tuple[RegionCatalogReport, RegionIndex, str]:
    """Checks, encodes and indexes a list (in a worker thread); raises if it cannot be routed."""
    report = check_region_catalog(doc, catalog, publish_time.date())
    if not report.ok:
        raise RegionCatalogInvalid(
            f"{len(report.errors)} row(s) of the list cannot be routed",
            field_violations=report.errors,
            metadata={"region_code": doc.region_code},
        )
    stored = RegionCatalogDocument(
        doc.region_code,
        doc.entries,
        doc.region_name or provinces[doc.region_code],
        doc.dialect,
        catalog.version,
        doc.provenance,
    )
    text = canonical_region_json(documents.region_catalog_to_json(stored))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return report, RegionIndex.build(stored, publish_time, digest), text


def _sort_int(version: str) -> int:
    year, number = version_key(version)
    return year * 1_000_000 + number
