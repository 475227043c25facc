"""The catalog's owner: loads it from the store, publishes versions and lists, swaps snapshots.

Invariants:
- Versions are immutable and strictly increasing: the same version with other content is a
  conflict, an older version is a rollback; identical republication is a no-op.
- A publication is durable in the store before the new snapshot becomes visible, and the
  snapshot is swapped with one assignment: readers see all of it or none of it.
- Publications are serialized by one lock; reads never wait for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.catalog import documents
from gateway.catalog.diff import CatalogDiff, RegionImpact, diff_catalogs, impact
from gateway.catalog.index import CatalogSnapshot, RegionIndex, VersionRecord, require_region
from gateway.catalog.model import CatalogDocument, RegionCatalogDocument, version_key
from gateway.catalog.validation import RowWarning, check_region_catalog
from gateway.errors import (
    CatalogInvalid,
    CatalogVersionConflict,
    CatalogVersionRollback,
    FailedPrecondition,
    RegionCatalogInvalid,
)
from gateway.store import Store


def canonical_json(data: Any) -> str:
    """The canonical form whose SHA-256 is a document's digest."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def digest_of(data: Any) -> str:
    """Hex SHA-256 of the canonical JSON of `data`."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


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
        self, store: Store, provinces: Mapping[str, str], clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.clock = clock
        self.snapshot = CatalogSnapshot(dict(provinces))
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Rebuilds the snapshot from the store."""
        provinces = self.snapshot.provinces
        snapshot = CatalogSnapshot(provinces)
        for publish_time, digest, text in await self.store.catalog_versions():
            parsed = documents.parse_catalog(json.loads(text), provinces)
            if parsed.value is None:
                raise CatalogInvalid(f"stored catalog {digest[:12]} no longer parses")
            snapshot = snapshot.with_version(
                VersionRecord(parsed.value, datetime.fromisoformat(publish_time), digest)
            )
        for publish_time, digest, text in await self.store.region_catalogs():
            region = documents.parse_region_catalog(json.loads(text), provinces)
            if region.value is None:
                raise RegionCatalogInvalid(f"stored region list {digest[:12]} no longer parses")
            snapshot = snapshot.with_region(
                RegionIndex.build(region.value, datetime.fromisoformat(publish_time), digest)
            )
        self.snapshot = snapshot

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
            lists = [ix.document for ix in snapshot.region_indexes().values()]
            impacts = impact(diff, lists) if diff else ()
            record = VersionRecord(doc, self.clock(), digest)
            if validate_only:
                return VersionPublication(record, diff, impacts, created=False)
            await self.store.insert_catalog_version(
                version=doc.version,
                sort_key=_sort_int(doc.version),
                effective_time=doc.effective_time.isoformat(),
                publish_time=record.publish_time.isoformat(),
                publisher=doc.publisher,
                digest=digest,
                document=canonical_json(data),
                signed_document=signed_document,
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
            report = check_region_catalog(doc, record.document, self.clock().date())
            if not report.ok:
                raise RegionCatalogInvalid(
                    f"{len(report.errors)} row(s) of the list cannot be routed",
                    field_violations=report.errors,
                    metadata={"region_code": doc.region_code},
                )
            stored = RegionCatalogDocument(
                doc.region_code,
                doc.entries,
                doc.region_name or snapshot.provinces[doc.region_code],
                doc.dialect,
                record.document.version,
                doc.provenance,
            )
            data = documents.region_catalog_to_json(stored)
            digest = digest_of(data)
            index = RegionIndex.build(stored, self.clock(), digest)
            if not validate_only:
                await self.store.upsert_region_catalog(
                    doc.region_code, index.publish_time.isoformat(), digest, canonical_json(data)
                )
                self.snapshot = self.snapshot.with_region(index)
            return RegionPublication(index, report.warnings)


def _sort_int(version: str) -> int:
    year, number = version_key(version)
    return year * 1_000_000 + number


def utc_now() -> datetime:
    """The wall clock, timezone-aware."""
    return datetime.now(UTC)
