"""The PostgreSQL schema, as the ordered list of migrations that build it.

Invariants:
- A migration is never edited or removed once released: a change of schema is a new entry at
  the end. Its version is its position (1-based), so the list is the only record of order.
- Each migration runs once, in its own transaction, recorded in `schema_version` in that same
  transaction: a failed one leaves neither its changes nor its row.
- The backend (`storage.postgres`) applies them under a transaction-scoped advisory lock, so
  replicas that start together apply each migration once between them; and refuses a database
  whose schema is newer than `SCHEMA_VERSION` (`SchemaTooNew`) rather than write to tables it
  does not know.
- Column types keep the SQLite backend's values and order exactly: times are `double
  precision` (the store's unit is float seconds), the application body `bytea`, and the text
  keys that order a listing compare bytewise (`COLLATE "C"`, SQLite's BINARY), whatever the
  database's own collation.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import FailedPrecondition


class SchemaTooNew(FailedPrecondition):
    """The database was migrated by a newer gateway than this one (reported at start)."""

    reason = "STORE_SCHEMA_TOO_NEW"


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema."""

    description: str
    """What it adds, in a few words (stored beside its version)."""
    sql: str
    """Statements run in one transaction."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "applications, status reports, catalog versions, region lists",
        """
CREATE TABLE catalog_versions (
    version text PRIMARY KEY,
    sort_key bigint NOT NULL UNIQUE,
    effective_time text NOT NULL,
    publish_time text NOT NULL,
    publisher text NOT NULL,
    digest text NOT NULL,
    document text NOT NULL,
    signed_document text NOT NULL DEFAULT ''
);
CREATE TABLE region_catalogs (
    region_code text COLLATE "C" PRIMARY KEY,
    publish_time text NOT NULL,
    digest text NOT NULL,
    document text NOT NULL
);
CREATE TABLE applications (
    application_id text COLLATE "C" PRIMARY KEY,
    origin_region text NOT NULL,
    request_id text NOT NULL,
    request_digest text NOT NULL,
    target_region text NOT NULL,
    state integer NOT NULL,
    create_time double precision NOT NULL,
    update_time double precision NOT NULL,
    next_attempt_time double precision,
    expire_time double precision NOT NULL,
    lease_owner text NOT NULL DEFAULT '',
    lease_until double precision NOT NULL DEFAULT 0,
    body bytea NOT NULL,
    UNIQUE (origin_region, request_id)
);
CREATE INDEX applications_by_origin ON applications (origin_region, create_time);
CREATE INDEX applications_by_target ON applications (target_region, create_time);
CREATE INDEX applications_due ON applications (next_attempt_time)
    WHERE next_attempt_time IS NOT NULL;
CREATE TABLE status_reports (
    application_id text NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (application_id, event_id)
);
""",
    ),
    Migration(
        "bundles (一件事)",
        """
CREATE TABLE bundles (
    bundle_id text COLLATE "C" PRIMARY KEY,
    origin_region text NOT NULL,
    request_id text NOT NULL,
    request_digest text NOT NULL,
    theme_code text COLLATE "C" NOT NULL,
    state integer NOT NULL,
    create_time double precision NOT NULL,
    update_time double precision NOT NULL,
    due_time double precision NOT NULL,
    body bytea NOT NULL,
    UNIQUE (origin_region, request_id)
);
CREATE INDEX bundles_by_state ON bundles (state, theme_code);
""",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code reads and writes."""


def pending(current: int) -> list[tuple[int, Migration]]:
    """The migrations a database at version `current` still needs, with their versions.

    Raises `SchemaTooNew` when the database is ahead of this code.
    """
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the database schema is at version {current}, newer than this gateway's "
            f"{SCHEMA_VERSION}: run a gateway at least as new, or point it at another database"
        )
    return [(v, MIGRATIONS[v - 1]) for v in range(current + 1, SCHEMA_VERSION + 1)]
