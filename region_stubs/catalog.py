"""The province's own implementation list: which local matter codes the stub accepts.

The list is the `tongban.region-catalog/v1` JSON of `standards/implementations/{region}.json`,
read with the gateway's own parser (`gateway.catalog.documents`) so that stub and gateway never
disagree on what a row says.

Invariants:
- A local code is known while it has a live row: no `cancel_date`, or a `cancel_date` not yet
  past (`RegionEntry.retired_on`, the gateway's rule). Retired codes are refused like unknown
  ones.
- "Today" is the date in China (UTC+8) at the time of the question, so a long-running stub
  retires a code when its day comes, without a reload.
- A list for another province, of another kind, or with a malformed row is refused at load: the
  stub never runs on a list it half understood.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gateway.catalog.documents import loads_json, parse_region_catalog
from gateway.catalog.model import RegionEntry

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
