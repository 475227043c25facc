"""The small world the storage tests build: applications and catalog versions, as plain rows."""

from __future__ import annotations

from gateway.storage.base import ApplicationRow, NewCatalogVersion

BASE_TIME = 1_750_000_000.0
"""`application(n)` is created at BASE_TIME + n unless told otherwise."""


def application(
    n: int,
    *,
    origin: str = "440000",
    target: str = "510000",
    request_id: str | None = None,
    create_time: float | None = None,
    next_attempt_time: float | None = None,
    expire_time: float | None = None,
    state: int = 2,
) -> ApplicationRow:
    """Application number `n` (id `app-000nn`), unleased, awaiting delivery only when
    `next_attempt_time` is given; expiring a day after it was created unless told otherwise."""
    created = BASE_TIME + n if create_time is None else create_time
    return ApplicationRow(
        application_id=f"app-{n:05d}",
        origin_region=origin,
        request_id=request_id or f"req-{n}",
        request_digest=f"digest-{n}",
        target_region=target,
        state=state,
        create_time=created,
        update_time=created,
        next_attempt_time=next_attempt_time,
        expire_time=created + 86_400 if expire_time is None else expire_time,
        lease_owner="",
        lease_until=0.0,
        body=f"body {n}".encode(),
    )


def catalog_version(
    version: str, sort_key: int, *, document: str = "{}", signed_document: str = ""
) -> NewCatalogVersion:
    """A catalog version whose publish time and digest name it (`t-<version>`, `d-<version>`)."""
    return NewCatalogVersion(
        version=version,
        sort_key=sort_key,
        effective_time="2025-01-01T00:00:00+08:00",
        publish_time=f"t-{version}",
        publisher="nsb",
        digest=f"d-{version}",
        document=document,
        signed_document=signed_document,
    )
