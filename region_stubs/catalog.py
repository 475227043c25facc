"""The catalogs a province works from: its own implementation list (which local matter codes
the stub accepts) and the national catalog versions (what each matter's cases produce).

The list is the `tongban.region-catalog/v1` JSON of `standards/implementations/{region}.json`,
the national versions the `tongban.catalog/v1` JSON files of `standards/catalog/`, both read
with the gateway's own parser (`gateway.catalog.documents`) so that stub and gateway never
disagree on what a row or a matter says.

Invariants:
- A local code is known while it has a live row: no `cancel_date`, or a `cancel_date` not yet
  past (`RegionEntry.retired_on`, the gateway's rule). Retired codes are refused like unknown
  ones.
- "Today" is the date in China (UTC+8) at the time of the question, so a long-running stub
  retires a code when its day comes, without a reload.
- A list for another province, of another kind, or with a malformed row is refused at load: the
  stub never runs on a list it half understood. So is a malformed national catalog, or a
  directory without one.
- A completed case issues the results its matter has in the catalog version it was routed
  under; a version the stub has not read (published to the gateway later) counts as the newest
  it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gateway.catalog.documents import loads_json, parse_catalog, parse_region_catalog
from gateway.catalog.model import RegionEntry, version_key
from gateway.licenses.trust import PROVINCE_CODES

CHINA = timezone(timedelta(hours=8))


class CatalogError(ValueError):
    """The implementation list cannot be used; the message says where it is wrong."""


@dataclass(frozen=True, slots=True)
class ImplementationList:
    """The local codes a province implements."""

    region_code: str
    """The province the list belongs to."""
    catalog_version: str
    """The national catalog version the list was written against."""
    entries: dict[str, tuple[RegionEntry, ...]]
    """Local code → its rows (a code may be listed more than once)."""

    def is_live(self, local_code: str, now: datetime) -> bool:
        """True when the province accepts `local_code` at `now` (an aware datetime)."""
        day = now.astimezone(CHINA).date()
        return any(not row.retired_on(day) for row in self.entries.get(local_code, ()))

    def is_retired(self, local_code: str, now: datetime) -> bool:
        """True when `local_code` is listed but none of its rows applies any more."""
        return local_code in self.entries and not self.is_live(local_code, now)


def load(path: Path, region_code: str) -> ImplementationList:
    """Reads and checks the list at `path` for `region_code`; raises `CatalogError`."""
    try:
        text = path.read_bytes()
    except OSError as e:
        raise CatalogError(f"{path}: cannot read the implementation list: {e}") from e
    return parse(text, region_code, source=str(path))


def parse(text: str | bytes, region_code: str, *, source: str = "<list>") -> ImplementationList:
    """Checks a list's JSON text for `region_code`; raises `CatalogError`."""
    data = loads_json(text)
    if data.value is None:
        raise CatalogError(f"{source}: {data.violations[0].description}")
    listed_for = data.value.get("region_code")
    if listed_for != region_code:
        raise CatalogError(f"{source}: a list of region {listed_for!r}, not of {region_code}")
    parsed = parse_region_catalog(data.value, (region_code,))
    if parsed.value is None:
        problems = "; ".join(f"{v.field}: {v.description}" for v in parsed.violations[:5])
        raise CatalogError(f"{source}: {problems}")
    entries: dict[str, list[RegionEntry]] = {}
    for row in parsed.value.entries:
        entries.setdefault(row.local_code, []).append(row)
    return ImplementationList(
        region_code=region_code,
        catalog_version=parsed.value.catalog_version,
        entries={code: tuple(rows) for code, rows in entries.items()},
    )


@dataclass(frozen=True, slots=True)
class MatterResults:
    """The licence types each matter's completed cases issue, per national catalog version."""

    by_version: Mapping[str, Mapping[str, tuple[str, ...]]]
    """Catalog version → national matter code → its `results`."""
    newest: str
    """The newest version read."""
    license_types: frozenset[str]
    """Every licence type the newest version names."""

    def results(self, national_code: str, catalog_version: str) -> tuple[str, ...]:
        """What a completed case of the matter issues under `catalog_version`."""
        known = catalog_version in self.by_version
        return self.by_version[catalog_version if known else self.newest].get(national_code, ())


def load_results(directory: Path) -> MatterResults:
    """Reads every `*.json` national catalog version in `directory`; raises `CatalogError`."""
    try:
        paths = sorted(directory.glob("*.json"))
        texts = {path: path.read_bytes() for path in paths}
    except OSError as e:
        raise CatalogError(f"{directory}: cannot read the national catalogs: {e}") from e
    by_version: dict[str, dict[str, tuple[str, ...]]] = {}
    license_types: dict[str, frozenset[str]] = {}
    for path, text in texts.items():
        data = loads_json(text)
        if data.value is None:
            raise CatalogError(f"{path}: {data.violations[0].description}")
        parsed = parse_catalog(data.value, PROVINCE_CODES)
        if parsed.value is None:
            problems = "; ".join(f"{v.field}: {v.description}" for v in parsed.violations[:5])
            raise CatalogError(f"{path}: {problems}")
        document = parsed.value
        by_version[document.version] = {
            code: matter.results for code, matter in document.matters.items() if matter.results
        }
        license_types[document.version] = frozenset(document.license_types)
    if not by_version:
        raise CatalogError(f"{directory}: no national catalog version (*.json) found")
    newest = max(by_version, key=version_key)
    return MatterResults(by_version, newest, license_types[newest])
