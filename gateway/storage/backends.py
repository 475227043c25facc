"""The one way to open (or only migrate) the store a `location.StoreConfig` names.

The process opens whichever backend it is given through `open_store`, so nothing above this
package names a backend.
"""

from __future__ import annotations

from gateway.storage.base import Store
from gateway.storage.location import PostgresConfig, StoreConfig
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from gateway.storage.sqlite import SqliteStore


async def open_store(config: StoreConfig) -> Store:
    """Opens the store `config` names (creating a SQLite file, migrating a PostgreSQL schema)."""
    if isinstance(config, PostgresConfig):
        return await PostgresStore.open(config)
    return await SqliteStore.open(config)


async def migrate_store(config: StoreConfig) -> int:
    """Brings the store's schema to this code's version without serving; returns the version."""
    if isinstance(config, PostgresConfig):
        return await PostgresStore.migrate(config)
    store = await SqliteStore.open(config)
    await store.close()
    return SQLITE_SCHEMA_VERSION
