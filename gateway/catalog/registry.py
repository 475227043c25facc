"""The catalog's owner: loads it from the store, publishes versions and lists, swaps snapshots.

Invariants:
- Versions are immutable and strictly increasing: the same version with other content is a
  conflict, an older version is a rollback; identical republication is a no-op.
- A publication is durable in the store before the new snapshot becomes visible, and the
  snapshot is swapped with one assignment: readers see all of it or none of it.
- Publications are serialized by one lock; reads never wait for it.
- Replicas share the store, and the store is the judge: a publication first loads what other
  replicas stored (`refresh`), so versions are judged against the store's latest, not only
  this snapshot; and the store itself stores a version only if it is newer than every stored
  one (atomically), so a publication racing another replica's is judged again after it lost.
- `refresh` (every second, and whenever the store's change feed says the catalog changed)
  compares the store's marker (newest version, list digests) with the snapshot, loads only what
  differs, and swaps in the new snapshot with one assignment: a version or list published
  through another replica comes into force here whole, or not yet.
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
import logging
from collections.abc import Callable, Mapping, Sequence
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
from gateway.storage.base import CatalogMarker, CatalogStore, NewCatalogVersion, StoredDocument

log = logging.getLogger(__name__)


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
        async with self._lock:
            await self._refresh(CatalogSnapshot(self.snapshot.provinces))

    async def refresh(self) -> bool:
        """Loads what the store holds and the snapshot does not (newer versions, other lists)
        into a new snapshot swapped in with one assignment; returns whether anything changed."""
        async with self._lock:
            return await self._refresh(self.snapshot)

    async def _refresh(self, base: CatalogSnapshot) -> bool:
        """`refresh` from `base` (the snapshot, or an empty one to rebuild); under the lock."""
        rebuilding = base is not self.snapshot
        marker = await self.store.catalog_marker()
        if marker == _marker_of(base) and not rebuilding:
            return False
        provinces = base.provinces
        versions = base.versions
        if marker.latest_sort_key != _marker_of(base).latest_sort_key:
            versions = await self._stored_versions(base)
        regions = dict(base.region_indexes())
        for code in set(regions) - set(marker.region_digests):
            del regions[code]  # cannot happen (lists are replaced, never deleted): follow the store
        for code, digest in sorted(marker.region_digests.items()):
            if code in regions and regions[code].digest == digest:
                continue
            stored = await self.store.region_catalog(code)
            if stored is None:
                continue  # cannot happen: lists are replaced, never deleted
            regions[code] = await asyncio.to_thread(
                index_stored_region,
                stored.document,
                datetime.fromisoformat(stored.publish_time),
                stored.digest,
                provinces,
            )
            del stored
        snapshot = CatalogSnapshot(provinces, versions, regions)
        changed = _marker_of(snapshot) != _marker_of(self.snapshot)
        self.snapshot = snapshot
        if changed and not rebuilding:
            latest = snapshot.latest()
            log.info(
                "catalog reloaded from the store: version %s, %d lists",
                latest.document.version if latest else None,
                len(regions),
            )
        return changed

    async def _stored_versions(self, base: CatalogSnapshot) -> tuple[VersionRecord, ...]:
        """Every stored version, oldest first; those `base` has are not parsed again."""
        known = {record.digest: record for record in base.versions}
        records = []
        for stored in await self.store.catalog_versions():
            record = known.get(stored.digest)
            if record is None:
                parsed = await asyncio.to_thread(
                    _parse_stored_catalog, stored.document, base.provinces
                )
                if parsed.value is None:
                    raise CatalogInvalid(f"stored catalog {stored.digest[:12]} no longer parses")
                publish_time = datetime.fromisoformat(stored.publish_time)
                record = VersionRecord(parsed.value, publish_time, stored.digest)
            records.append(record)
        return tuple(records)

    async def bootstrap(self, catalog_files: Sequence[Path], implementations_dir: Path) -> bool:
        """Seeds an empty store with the bundled catalogs and lists; False if not empty.

        The first catalog is stored, then the lists (judged against it), then each later
        catalog as a publication would store it (the lists stay; what they lose is impact).
        """
        if self.snapshot.versions:
            return False
        first, *later = catalog_files
        await self._bootstrap_version(first)
        for path in await asyncio.to_thread(lambda: sorted(implementations_dir.glob("*.json"))):
            region_data = json.loads(await asyncio.to_thread(path.read_text, encoding="utf-8"))
            region = documents.parse_region_catalog(region_data, self.snapshot.provinces)
            if region.value is None:
                raise RegionCatalogInvalid(
                    f"bundled list {path} is invalid", field_violations=region.violations
                )
            await self.publish_region(region.value)
        for catalog_file in later:
            await self._bootstrap_version(catalog_file)
        return True

    async def _bootstrap_version(self, catalog_file: Path) -> None:
        data = json.loads(await asyncio.to_thread(catalog_file.read_text, encoding="utf-8"))
        parsed = documents.parse_catalog(data, self.snapshot.provinces)
        if parsed.value is None:
            raise CatalogInvalid(
                f"bundled catalog {catalog_file} is invalid", field_violations=parsed.violations
            )
        await self.publish_version(parsed.value, data, signed_document="")

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
            # Judged against the store's latest: another replica may have published since.
            await self._refresh(self.snapshot)
            while True:
                outcome = self._judge_version(doc, data, digest)
                if not isinstance(outcome, VersionRecord):
                    return outcome
                record = outcome
                snapshot = self.snapshot
                latest = snapshot.latest()
                diff = diff_catalogs(latest.document, doc) if latest else None
                used = {code: ix.national_codes() for code, ix in snapshot.region_indexes().items()}
                impacts = impact_of_codes(diff, used) if diff else ()
                if validate_only:
                    return VersionPublication(record, diff, impacts, created=False)
                stored = await self.store.insert_catalog_version(
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
                if stored:
                    self.snapshot = self.snapshot.with_version(record)
                    return VersionPublication(record, diff, impacts, created=True)
                # Another replica stored a version at least as new since the refresh: load it
                # and judge again (now refused, or an identical republication).
                await self._refresh(self.snapshot)

    def _judge_version(
        self, doc: CatalogDocument, data: Mapping[str, Any], digest: str
    ) -> VersionPublication | VersionRecord:
        """The publication's outcome if it stores nothing (an identical republication), the
        record to store if it may; raises if it is a conflict or a rollback."""
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
        return VersionRecord(doc, self.clock(), digest)

    async def check_region(
        self, doc: RegionCatalogDocument, *, rows: Sequence[int] | None = None
    ) -> RegionCatalogReport:
        """What publishing `doc` would report, checked against the catalog a publication would
        be (nothing is published); `rows` as in `check_region_catalog`."""
        async with self._lock:
            await self._refresh(self.snapshot)
            record = self._list_basis(doc)
            return await asyncio.to_thread(
                check_region_catalog, doc, record.document, self.clock().date(), rows=rows
            )

    def _list_basis(self, doc: RegionCatalogDocument) -> VersionRecord:
        """The catalog version a list is checked against: the one in force, else the latest;
        under the lock, after a refresh."""
        snapshot = self.snapshot
        require_region(snapshot, doc.region_code, "region_catalog.name")
        record = snapshot.current(self.clock()) or snapshot.latest()
        if record is None:
            raise FailedPrecondition("no catalog version is published yet")
        return record

    async def publish_region(
        self, doc: RegionCatalogDocument, *, validate_only: bool = False
    ) -> RegionPublication:
        """Checks a list against the current catalog and, if routable, makes it live."""
        async with self._lock:
            await self._refresh(self.snapshot)  # checked against the store's latest catalog
            snapshot = self.snapshot
            record = self._list_basis(doc)
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


def _marker_of(snapshot: CatalogSnapshot) -> CatalogMarker:
    """What the store's marker is when it holds exactly what `snapshot` holds."""
    latest = snapshot.latest()
    return CatalogMarker(
        _sort_int(latest.document.version) if latest is not None else None,
        {code: index.digest for code, index in snapshot.region_indexes().items()},
    )


def _sort_int(version: str) -> int:
    year, number = version_key(version)
    return year * 1_000_000 + number
