"""The province's cases and delivery counters, in one SQLite file (or in memory).

Invariants:
- At most one case per application id. `record_delivery` claims the id inside one write
  transaction (`BEGIN IMMEDIATE`) and the id is the table's unique key, so concurrent deliveries
  (other threads, other connections, another stub process on the same file) create exactly one
  case; every other delivery of that id is counted as a suppressed duplicate and gets the same
  receipt id and receive time back.
- A case keeps the digest of the content it was delivered with. A later delivery of its id with
  another digest is refused (`ApplicationIdReused`) and changes nothing, not even a counter; an
  empty digest on either side (a case stored before digests were kept) is never compared.
- Counters live in the same file and move in the same transaction as the case they describe,
  so they survive a restart on the same data directory and never disagree with the cases.
  `cases_created` and `cases_by_matter` are counted from the cases themselves.
- A case only moves forward: DELIVERED → ACCEPTED | REJECTED | WITHDRAWN, ACCEPTED → COMPLETED.
  Asking for the state a case is already in is a repeat, not an error: it returns the case
  unchanged, with the event id of the transition that put it there, so a report can be re-sent
  idempotently. A case is decided once it has left DELIVERED: only an undecided case can be
  withdrawn.
- The licences issued when a case completes are minted inside the transaction that completes
  it and stored with it, so a completed case always carries the same licences and a re-sent
  COMPLETED report sends them again, never new ones.
- A case keeps what its decisions need from the delivered application (the national matter,
  the catalog version, the applicant's id): the province's own record. It never leaves the
  file except in the licences issued to the applicant.
- sqlite errors are translated here and nowhere else: a locked or failing database becomes
  `StoreUnavailable`.

Threading: one connection, used on the event loop. Every call is one short local transaction:
WAL with synchronous=NORMAL does not fsync on commit (a stub may lose its last commits in a power
cut, never in a crash), and a delivery's two transactions measured ~110 µs on a file and ~40 µs
in memory, about what a hop to a worker thread and back costs by itself and small beside a gRPC
call. Running on the loop also serialises the stub's own calls for free. A lock still guards the
connection so that tests (or tools) may call in from threads.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

from gateway.errors import (
    ApplicationIdReused,
    ApplicationNotFound,
    InvalidStateTransition,
    StoreUnavailable,
)
from gateway.times import utc_now

CHINA = timezone(timedelta(hours=8))
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    seq              INTEGER PRIMARY KEY,
    application_id   TEXT NOT NULL UNIQUE,
    receipt_id       TEXT NOT NULL UNIQUE,
    local_code       TEXT NOT NULL,
    state            TEXT NOT NULL,
    reason           TEXT NOT NULL DEFAULT '',
    receive_time_us  INTEGER NOT NULL,
    update_time_us   INTEGER NOT NULL,
    event_id         TEXT NOT NULL DEFAULT '',
    national_code    TEXT NOT NULL DEFAULT '',
    catalog_version  TEXT NOT NULL DEFAULT '',
    holder_id_type   INTEGER NOT NULL DEFAULT 0,
    holder_id_number TEXT NOT NULL DEFAULT '',
    issued_licenses  TEXT NOT NULL DEFAULT '[]',
    content_digest   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS cases_by_local_code ON cases (local_code);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_UPGRADES: dict[int, str] = {
    1: """
ALTER TABLE cases ADD COLUMN national_code TEXT NOT NULL DEFAULT '';
ALTER TABLE cases ADD COLUMN catalog_version TEXT NOT NULL DEFAULT '';
ALTER TABLE cases ADD COLUMN holder_id_type INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cases ADD COLUMN holder_id_number TEXT NOT NULL DEFAULT '';
ALTER TABLE cases ADD COLUMN issued_licenses TEXT NOT NULL DEFAULT '[]';
""",
    2: """
ALTER TABLE cases ADD COLUMN content_digest TEXT NOT NULL DEFAULT '';
""",
}
"""Schema version → the statements that take a file of that version to the next."""


class CaseState(enum.Enum):
    """Where a case stands in the province."""

    DELIVERED = "DELIVERED"
    """Received from the gateway; not decided yet."""
    ACCEPTED = "ACCEPTED"
    """Accepted for handling (受理)."""
    REJECTED = "REJECTED"
    """Refused (不予受理). Terminal."""
    COMPLETED = "COMPLETED"
    """Finished (办结). Terminal."""
    WITHDRAWN = "WITHDRAWN"
    """Withdrawn (撤回) at the applicant's request before it was decided. Terminal."""


ALLOWED_TRANSITIONS: dict[CaseState, frozenset[CaseState]] = {
    CaseState.DELIVERED: frozenset({CaseState.ACCEPTED, CaseState.REJECTED, CaseState.WITHDRAWN}),
    CaseState.ACCEPTED: frozenset({CaseState.COMPLETED}),
    CaseState.REJECTED: frozenset(),
    CaseState.COMPLETED: frozenset(),
    CaseState.WITHDRAWN: frozenset(),
}


class Counter(enum.StrEnum):
    """The counters a caller bumps itself; the case counters move with the cases."""

    DELIVERIES_RECEIVED = "deliveries_received"
    FAULTS_INJECTED = "faults_injected"
    UNKNOWN_MATTER_REFUSED = "unknown_matter_refused"
    HUNG_CALLS_CANCELLED = "hung_calls_cancelled"
    CALLS_WITHOUT_DEADLINE = "calls_without_deadline"
    LICENSES_FETCHED = "licenses_fetched"
    LICENSE_FETCHES_NOT_FOUND = "license_fetches_not_found"
    LONGEST_DEADLINE_MS = "longest_deadline_ms"
    """A high-water mark, raised with `CaseStore.raise_to`, not counted."""


_DUPLICATES = "duplicates_suppressed"


class Delivery(NamedTuple):
    """The answer to one delivery."""

    receipt_id: str
    """The case's receipt id (受理编号); the same for every delivery of the application."""
    duplicate: bool
    """True when the application already had a case."""
    receive_time: datetime
    """When the case was created."""


@dataclass(frozen=True, slots=True)
class Case:
    """One case, as stored."""

    application_id: str
    """The gateway's application id."""
    receipt_id: str
    """The province's receipt id."""
    local_code: str
    """The local matter code it was delivered under."""
    state: CaseState
    """Current state."""
    reason: str
    """The province's reason for the current state, if any."""
    receive_time: datetime
    """When the case was created."""
    update_time: datetime
    """When the case last changed."""
    event_id: str
    """Id of the transition into the current state; empty while DELIVERED."""
    national_code: str = ""
    """The national matter's basic code the application was routed to; may be empty."""
    catalog_version: str = ""
    """The catalog version the application was routed under; may be empty."""
    holder_id_type: int = 0
    """The applicant's `gateway.api.v1.IdType`; 0 when the delivery named none."""
    holder_id_number: str = ""
    """The applicant's id number; personal data, never logged."""
    issued_licenses: tuple[str, ...] = ()
    """The licence tokens issued when the case completed, in issue order."""


@dataclass(frozen=True, slots=True)
class Counters:
    """Delivery counters since the store file was created."""

    deliveries_received: int
    cases_created: int
    duplicates_suppressed: int
    faults_injected: int
    unknown_matter_refused: int
    cases_by_matter: dict[str, int]
    hung_calls_cancelled: int = 0
    longest_deadline_ms: int = 0
    calls_without_deadline: int = 0
    licenses_fetched: int = 0
    license_fetches_not_found: int = 0
    cases_withdrawn: int = 0


class Transition(NamedTuple):
    """The outcome of asking a case to move."""

    case: Case
    """The case afterwards."""
    changed: bool
    """False when the case was already in the asked state (a repeat)."""


class CaseStore:
    """Cases and counters of one province. Open with `CaseStore.open`, close when done."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        region_code: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._db = connection
        self._region_code = region_code
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: Path | None,
        *,
        region_code: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> CaseStore:
        """Opens (creating if needed) the store at `path`, or an in-memory one for None."""
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                ":memory:" if path is None else path,
                isolation_level=None,  # transactions are explicit, see _write
                check_same_thread=False,  # guarded by the store's lock instead
                timeout=5.0,
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            _migrate(db)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open the case store: {e}") from e
        return cls(db, region_code=region_code, clock=clock)

    def close(self) -> None:
        """Closes the connection; the store cannot be used afterwards."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from its first statement."""
        with self._lock, _translated():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def record_delivery(
        self,
        application_id: str,
        local_code: str,
        *,
        national_code: str = "",
        catalog_version: str = "",
        holder_id_type: int = 0,
        holder_id_number: str = "",
        content_digest: str = "",
    ) -> Delivery:
        """Creates the case for `application_id` unless it exists; counts which it was. A
        repeat keeps the case as first recorded.

        Raises `ApplicationIdReused` when the case exists with another content digest.
        """
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                "SELECT receipt_id, receive_time_us, content_digest FROM cases"
                " WHERE application_id = ?",
                (application_id,),
            ).fetchone()
            if row is not None:
                if row[2] and content_digest and row[2] != content_digest:
                    raise ApplicationIdReused(
                        f"application {application_id} was delivered before with other content",
                        metadata={"receipt_id": row[0]},
                    )
                _bump(db, _DUPLICATES)
                return Delivery(row[0], True, _from_us(row[1]))
            (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM cases").fetchone()
            receipt_id = f"{self._region_code}-{now.astimezone(CHINA):%Y%m%d}-{seq:06d}"
            db.execute(
                "INSERT INTO cases (seq, application_id, receipt_id, local_code, state,"
                " receive_time_us, update_time_us, national_code, catalog_version,"
                " holder_id_type, holder_id_number, content_digest)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    application_id,
                    receipt_id,
                    local_code,
                    CaseState.DELIVERED.value,
                    _to_us(now),
                    _to_us(now),
                    national_code,
                    catalog_version,
                    holder_id_type,
                    holder_id_number,
                    content_digest,
                ),
            )
        return Delivery(receipt_id, False, _from_us(_to_us(now)))

    def count(self, counter: Counter, amount: int = 1) -> None:
        """Adds `amount` to a counter."""
        with self._write() as db:
            _bump(db, counter.value, amount)

    def raise_to(self, counter: Counter, value: int) -> None:
        """Raises a high-water mark to `value` if it is lower."""
        with self._write() as db:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                (counter.value, value),
            )

    def counters(self) -> Counters:
        """All counters."""
        with self._lock, _translated():
            stored = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
            by_matter = dict(
                self._db.execute(
                    "SELECT local_code, COUNT(*) FROM cases GROUP BY local_code"
                ).fetchall()
            )
            (withdrawn,) = self._db.execute(
                "SELECT COUNT(*) FROM cases WHERE state = ?", (CaseState.WITHDRAWN.value,)
            ).fetchone()
        return Counters(
            deliveries_received=stored.get(Counter.DELIVERIES_RECEIVED.value, 0),
            cases_created=sum(by_matter.values()),
            duplicates_suppressed=stored.get(_DUPLICATES, 0),
            faults_injected=stored.get(Counter.FAULTS_INJECTED.value, 0),
            unknown_matter_refused=stored.get(Counter.UNKNOWN_MATTER_REFUSED.value, 0),
            cases_by_matter=by_matter,
            hung_calls_cancelled=stored.get(Counter.HUNG_CALLS_CANCELLED.value, 0),
            longest_deadline_ms=stored.get(Counter.LONGEST_DEADLINE_MS.value, 0),
            calls_without_deadline=stored.get(Counter.CALLS_WITHOUT_DEADLINE.value, 0),
            licenses_fetched=stored.get(Counter.LICENSES_FETCHED.value, 0),
            license_fetches_not_found=stored.get(Counter.LICENSE_FETCHES_NOT_FOUND.value, 0),
            cases_withdrawn=withdrawn,
        )

    def get(self, application_id: str) -> Case | None:
        """The case of `application_id`, or None."""
        with self._lock, _translated():
            return _case(self._db, application_id)

    def undecided(self) -> list[Case]:
        """The cases not in a terminal state (DELIVERED or ACCEPTED), oldest first."""
        with self._lock, _translated():
            ids = self._db.execute(
                "SELECT application_id FROM cases WHERE state IN (?, ?) ORDER BY seq",
                (CaseState.DELIVERED.value, CaseState.ACCEPTED.value),
            ).fetchall()
            found = [_case(self._db, application_id) for (application_id,) in ids]
        return [case for case in found if case is not None]

    def transition(
        self,
        application_id: str,
        state: CaseState,
        reason: str = "",
        *,
        issue: Callable[[Case], Sequence[str]] | None = None,
    ) -> Transition:
        """Moves a case to `state`; raises `ApplicationNotFound`, `InvalidStateTransition`.

        `issue`, called only when the case really moves (not on a repeat) and inside the same
        transaction, returns the licence tokens to store with the moved case; what it raises
        leaves the case as it was.
        """
        with self._write() as db:
            case = _case(db, application_id)
            if case is None:
                raise ApplicationNotFound(f"no case for application {application_id}")
            if case.state is state:
                return Transition(case, changed=False)
            if state not in ALLOWED_TRANSITIONS[case.state]:
                raise InvalidStateTransition(
                    f"a {case.state.value} case cannot become {state.value}",
                    metadata={"from": case.state.value, "to": state.value},
                )
            now = _from_us(_to_us(self._clock()))
            moved = replace(
                case,
                state=state,
                reason=reason,
                update_time=now,
                event_id=f"{self._region_code}-{uuid.uuid4()}",
            )
            if issue is not None:
                moved = replace(moved, issued_licenses=tuple(issue(moved)))
            db.execute(
                "UPDATE cases SET state = ?, reason = ?, update_time_us = ?, event_id = ?,"
                " issued_licenses = ? WHERE application_id = ?",
                (
                    state.value,
                    reason,
                    _to_us(now),
                    moved.event_id,
                    json.dumps(list(moved.issued_licenses)),
                    application_id,
                ),
            )
        return Transition(moved, changed=True)


def _migrate(db: sqlite3.Connection) -> None:
    """Creates the schema in a new file, or brings an older file's up to `SCHEMA_VERSION`."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"the file has schema version {version}; this stub knows {SCHEMA_VERSION} at most"
        )
    db.executescript(_SCHEMA)  # a new file: the current schema; an older one: untouched
    for old in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
        db.executescript(_UPGRADES[old])
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as e:
        # Locked, busy, disk full, I/O error: conditions a retry may outlive.
        raise StoreUnavailable(f"case store: {e}") from e


def _bump(db: sqlite3.Connection, name: str, amount: int = 1) -> None:
    db.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        (name, amount),
    )


def _case(db: sqlite3.Connection, application_id: str) -> Case | None:
    row = db.execute(
        "SELECT application_id, receipt_id, local_code, state, reason, receive_time_us,"
        " update_time_us, event_id, national_code, catalog_version, holder_id_type,"
        " holder_id_number, issued_licenses FROM cases WHERE application_id = ?",
        (application_id,),
    ).fetchone()
    if row is None:
        return None
    return Case(
        application_id=row[0],
        receipt_id=row[1],
        local_code=row[2],
        state=CaseState(row[3]),
        reason=row[4],
        receive_time=_from_us(row[5]),
        update_time=_from_us(row[6]),
        event_id=row[7],
        national_code=row[8],
        catalog_version=row[9],
        holder_id_type=row[10],
        holder_id_number=row[11],
        issued_licenses=tuple(json.loads(row[12])),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _to_us(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _from_us(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND
