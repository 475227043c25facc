"""The audit log: who did what to which application, tamper-evident, append-only.

Invariants, in plain words:

- One record per line (JSON Lines, UTF-8), appended, never rewritten. Records are numbered
  from 1 without gaps (`seq`), in file order.
- Each record's `hash` is the SHA-256 (hex) of its canonical JSON without the `hash` field:
  keys sorted, no spaces, UTF-8, non-ASCII kept. Its `prev` is the previous record's `hash`
  (64 zeros for the first), so editing, removing, reordering or inserting a record breaks the
  chain where it happened; `verify_audit_log` says where and how.
- A chain only proves the file is self-consistent: whoever can rewrite the whole file can
  rebuild it, and cutting records off the end leaves a shorter valid chain. Copy `head`
  somewhere else from time to time and pass it to `verify_audit_log(expected_head=...)`.
- Personal data never reaches the file in clear: the only field for it is
  `AuditEvent.personal`, whose values are written as HMAC-SHA256 digests under a key kept
  away from the log (an ID number has too little entropy for a plain hash). A valid
  公民身份号码 found in any other field (a province using one as its request id, a handler
  putting one in the wrong field) is replaced there by `[redacted:<digest>]`.
- Appends are serialized: sequence number, chain and file order are assigned under one lock,
  so concurrent callers (threads) cannot interleave or fork the chain. `append` blocks until
  its record is written (and synced, per policy). Only one process may hold a log open
  (`flock`).
- `submit` is the form for the event loop: the caller only queues the event (with its time);
  the log's thread numbers, chains, writes and syncs queued events in submission order, in
  batches, so a call pays neither the hashing nor a thread hand-off of its own. With a
  `linger`, the thread waits that long after the first event of a batch, so that one
  wake-up, one write and one fsync serve every event of that moment. A record that cannot be
  written is reported to `on_lost`; `barrier` waits for what was queued before it.
- After a write error the log refuses every further append: a gap in the audit trail must be
  loud. Reopening continues the chain from the last record, after checking that record; a
  torn last line (a crash mid-write) is refused until an operator has looked at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

GENESIS = "0" * 64
"""The `prev` of the first record."""


class AuditLogError(Exception):
    """The audit log cannot be written: in use, corrupt at its end, or failed earlier."""


class FsyncPolicy(enum.StrEnum):
    """When appended records are forced to stable storage."""

    ALWAYS = "always"
    """Before every append (or batch of concurrent appends) returns."""
    INTERVAL = "interval"
    """At most once per `fsync_interval` seconds, and at close."""
    NEVER = "never"
    """Left to the operating system, except at close."""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What happened, as a handler reports it."""

    actor: str
    """The caller's identity URI, or `anonymous`."""
    action: str
    """What was attempted, e.g. `ApplicationService.SubmitApplication`."""
    outcome: str
    """`OK`, or the stable reason it failed (`NOT_OWN_REGION`, `LICENSE_INVALID`, ...)."""
    application_id: str = ""
    """The gateway's application id, when there is one."""
    request_id: str = ""
    """The caller's request id, when there is one."""
    region_codes: tuple[str, ...] = ()
    """The provinces involved (origin, target)."""
    catalog_version: str = ""
    """The catalog version concerned, when there is one."""
    personal: Mapping[str, str] = field(default_factory=dict)
    """Personal data, in clear, by name (`applicant_id`): only its keyed digest is written."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One line of the log."""

    seq: int
    time: str
    actor: str
    action: str
    outcome: str
    application_id: str
    request_id: str
    region_codes: tuple[str, ...]
    catalog_version: str
    personal: Mapping[str, str]
    """Name → HMAC-SHA256 hex digest."""
    prev: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """The record as written (a JSON object)."""
        return {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "outcome": self.outcome,
            "application_id": self.application_id,
            "request_id": self.request_id,
            "region_codes": list(self.region_codes),
            "catalog_version": self.catalog_version,
            "personal": dict(self.personal),
            "prev": self.prev,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The last record of a log, to keep elsewhere as an anchor."""

    seq: int
    hash: str


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes that are hashed."""
    return _CANONICAL.encode(value).encode()


_AFTER_HASH = b',"outcome":'
"""The key that sorts right after `hash` in a record (`catalog_version` sorts before it)."""


def _with_hash(unhashed: bytes, digest: str) -> bytes:
    """The record's line: its canonical JSON without `hash`, with `hash` put in key order.

    The top-level keys before `outcome` hold only strings, and a string's quotes are escaped
    in JSON, so the first `,"outcome":` is the key itself.
    """
    at = unhashed.index(_AFTER_HASH)
    return b"".join((unhashed[:at], b',"hash":"', digest.encode(), b'"', unhashed[at:], b"\n"))


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the record's canonical JSON, its own `hash` field left out."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AuditLog:
    """An open audit log; one per process, opened at startup, closed at shutdown."""

    def __init__(
        self,
        path: Path,
        key: bytes,
        *,
        fsync: FsyncPolicy = FsyncPolicy.ALWAYS,
        fsync_interval: float = 1.0,
        clock: Callable[[], datetime] = _utc_now,
        on_lost: Callable[[BaseException], None] | None = None,
        linger: float = 0.0,
    ) -> None:
        if len(key) < 16:
            raise ValueError("the personal-data key must be at least 16 bytes")
        self._key = key
        self._fsync = fsync
        self._fsync_interval = fsync_interval
        self._clock = clock
        self._on_lost = on_lost
        self._linger = linger
        self.path = path
        self._queue_lock = threading.Lock()  # the submitted events and whether a drain is due
        self._queue: list[tuple[AuditEvent, datetime]] = []
        self._draining = False
        self._accepting = True
        self._state_lock = threading.Lock()  # seq, chain, pending lines
        self._write_lock = threading.Lock()  # the file
        self._pending: list[bytes] = []
        self._failed: BaseException | None = None
        self._closed = False
        self._last_sync = time.monotonic()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise AuditLogError(f"{path} is open in another process") from None
        try:
            head = _read_head(path)
        except AuditLogError:
            os.close(self._fd)
            raise
        self._seq, self._hash = (0, GENESIS) if head is None else (head.seq, head.hash)
        self._written = AuditHead(self._seq, self._hash)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-log")

    @property
    def head(self) -> AuditHead:
        """The last record written (seq 0 and the genesis hash for an empty log)."""
        return self._written

    def digest_personal(self, value: str) -> str:
        """The keyed digest (HMAC-SHA256, hex) that stands for a personal value."""
        return hmac.digest(self._key, value.encode(), "sha256").hex()

    def append(self, event: AuditEvent) -> AuditRecord:
        """Appends a record and waits for it to be written. Blocks: not on the event loop."""
        record = self._stage(event)
        self._flush_through(record.seq)
        return record

    def submit(self, event: AuditEvent) -> None:
        """Queues `event` for the log's thread to append; never blocks, never raises.

        Records keep submission order. One that cannot be written (the log failed or is
        closed) is reported to `on_lost`.
        """
        at = self._clock()
        with self._queue_lock:
            accepted = self._accepting
            if accepted:
                self._queue.append((event, at))
                start = not self._draining
                self._draining = True
        if not accepted:
            self._lost(AuditLogError("the audit log is closed"))
        elif start:
            self._executor.submit(self._drain)

    def barrier(self) -> Future[None]:
        """A future done once every event submitted before this call was appended (or lost)."""
        try:
            return self._executor.submit(_nothing)
        except RuntimeError:  # shut down: everything queued has been drained
            done: Future[None] = Future()
            done.set_result(None)
            return done

    def _drain(self) -> None:
        if self._linger > 0:
            time.sleep(self._linger)  # let more events queue up: one wake-up and write for all
        while True:
            with self._queue_lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._draining = False
                    return
            last = 0
            for event, at in batch:
                try:
                    last = self._stage(event, at).seq
                except Exception as error:  # reported; the drain must go on
                    self._lost(error)
            if last:
                try:
                    self._flush_through(last)
                except Exception as error:  # reported; the drain must go on
                    self._lost(error)

    def _lost(self, error: BaseException) -> None:
        if self._on_lost is not None:
            self._on_lost(error)

    def close(self) -> None:
        """Writes what is pending, syncs, and releases the file."""
        with self._queue_lock:
            self._accepting = False
        with contextlib.suppress(RuntimeError):  # already shut down by an earlier close
            self._executor.submit(_nothing).result()  # what was submitted is appended first
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            last = self._seq
        self._executor.shutdown(wait=True)
        try:
            if self._failed is None:
                self._flush_through(last)
                os.fsync(self._fd)
        finally:
            os.close(self._fd)

    async def aclose(self) -> None:
        """`close` off the event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _stage(self, event: AuditEvent, at: datetime | None = None) -> AuditRecord:
        """Numbers and chains the record (of time `at`, default now) and queues its line."""
        texts = (
            event.actor,
            event.action,
            event.outcome,
            event.application_id,
            event.request_id,
            *event.region_codes,
            event.catalog_version,
            *event.personal,
        )
        # One scan of every field for a possible ID number; usually there is none.
        redact = self._redact if _CITIZEN_ID.search("\n".join(texts)) else _unchanged
        fields: dict[str, Any] = {
            "actor": redact(event.actor),
            "action": redact(event.action),
            "outcome": redact(event.outcome),
            "application_id": redact(event.application_id),
            "request_id": redact(event.request_id),
            "region_codes": [redact(code) for code in event.region_codes],
            "catalog_version": redact(event.catalog_version),
            "personal": {
                redact(name): self.digest_personal(value)
                for name, value in sorted(event.personal.items())
            },
        }
        with self._state_lock:
            if self._closed:
                raise AuditLogError("the audit log is closed")
            if self._failed is not None:
                raise AuditLogError("the audit log failed earlier") from self._failed
            body = {
                **fields,
                "seq": self._seq + 1,
                "time": (at or self._clock()).astimezone(UTC).isoformat(timespec="microseconds"),
                "prev": self._hash,
            }
            unhashed = canonical_json(body)
            body["hash"] = hashlib.sha256(unhashed).hexdigest()
            self._pending.append(_with_hash(unhashed, body["hash"]))
            self._seq, self._hash = body["seq"], body["hash"]
        return AuditRecord(
            seq=body["seq"],
            time=body["time"],
            actor=body["actor"],
            action=body["action"],
            outcome=body["outcome"],
            application_id=body["application_id"],
            request_id=body["request_id"],
            region_codes=tuple(body["region_codes"]),
            catalog_version=body["catalog_version"],
            personal=body["personal"],
            prev=body["prev"],
            hash=body["hash"],
        )

    def _redact(self, text: str) -> str:
        """`text` with every valid citizen ID number replaced by its digest."""

        def replace(match: re.Match[str]) -> str:
            found = match.group(1)
            return f"[redacted:{self.digest_personal(found)}]" if _is_citizen_id(found) else found

        return _CITIZEN_ID.sub(replace, text)

    def _flush_through(self, seq: int) -> None:
        """Makes sure records up to `seq` are in the file; writes every pending line."""
        with self._write_lock:
            if self._written.seq >= seq:
                return  # an earlier flush took this record with its batch
            if self._failed is not None:
                raise AuditLogError("the audit log failed earlier") from self._failed
            with self._state_lock:
                lines, self._pending = self._pending, []
                head = AuditHead(self._seq, self._hash)
            try:
                _write_all(self._fd, b"".join(lines))
                now = time.monotonic()
                if self._fsync is FsyncPolicy.ALWAYS or (
                    self._fsync is FsyncPolicy.INTERVAL
                    and now - self._last_sync >= self._fsync_interval
                ):
                    os.fsync(self._fd)
                    self._last_sync = now
            except OSError as error:
                self._failed = error
                raise AuditLogError(f"cannot write {self.path}: {error}") from error
            self._written = head


def _unchanged(text: str) -> str:
    return text


def _nothing() -> None:
    pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_head(path: Path) -> AuditHead | None:
    """The last record of an existing log, after checking its own hash."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return None
        chunk, pos = b"", end
        while pos > 0 and chunk.count(b"\n") < 2:
            step = min(pos, 64 * 1024)
            pos -= step
            f.seek(pos)
            chunk = f.read(step) + chunk
    if not chunk.endswith(b"\n"):
        raise AuditLogError(f"{path} ends with a torn line: verify it before appending")
    last = chunk[:-1].rsplit(b"\n", 1)[-1]
    record = _parse_record(last)
    if record is None or record_hash(record) != record["hash"]:
        raise AuditLogError(f"{path}: the last record is damaged: verify it before appending")
    return AuditHead(record["seq"], record["hash"])


# -- Citizen ID numbers in clear -----------------------------------------------------------

_CITIZEN_ID = re.compile(r"(?<![0-9])([1-9][0-9]{16}[0-9Xx])(?![0-9A-Za-z])")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _is_citizen_id(text: str) -> bool:
    digits, check = text[:17], text[17].upper()
    if "10X98765432"[sum(int(d) * w for d, w in zip(digits, _ID_WEIGHTS, strict=True)) % 11] != (
        check
    ):
        return False
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    return born.year >= 1900


# -- Verification --------------------------------------------------------------------------


class Tampering(enum.StrEnum):
    """What is wrong with a log, at the first place it goes wrong."""

    EDITED = "EDITED"
    """A record's content differs from what was chained (its hash or its successor's prev)."""
    REMOVED = "REMOVED"
    """A record is missing (at the end: only detectable with an expected head)."""
    REORDERED = "REORDERED"
    """The records are all there but out of order."""
    INSERTED = "INSERTED"
    """A record that does not belong (a duplicate, or a forged one)."""
    TRUNCATED_LINE = "TRUNCATED_LINE"
    """The file ends in the middle of a line."""
    BAD_JSON = "BAD_JSON"
    """A line that is not a record."""


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """The verdict on a log file."""

    ok: bool
    records_checked: int
    """Records verified before the first problem (all of them when ok)."""
    first_bad_seq: int | None = None
    """Every record numbered below this one verified; None when ok."""
    kind: Tampering | None = None
    """What went wrong first; None when ok."""
    line: int | None = None
    """The 1-based line where it was found; None when ok."""
    head: AuditHead | None = None
    """The last verified record (None for an empty log, or when the first one is bad)."""


def _parse_record(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if (
        not isinstance(value, dict)
        or type(value.get("seq")) is not int
        or not isinstance(value.get("prev"), str)
        or not isinstance(value.get("hash"), str)
    ):
        return None
    return value


def _intact(line: bytes) -> dict[str, Any] | None:
    """The record on a line if it is complete and its own hash matches."""
    if not line.endswith(b"\n"):
        return None
    record = _parse_record(line)
    if record is None or record_hash(record) != record["hash"]:
        return None
    return record


def verify_audit_log(path: Path, *, expected_head: AuditHead | None = None) -> AuditVerification:
    """Checks the whole chain; with `expected_head`, also that the log still reaches it."""
    with open(path, "rb") as f:
        return _verify(iter(f), expected_head)


def _verify(lines: Iterator[bytes], anchor: AuditHead | None) -> AuditVerification:
    expected, prev, line_no = 1, GENESIS, 0
    head: AuditHead | None = None
    before_head: AuditHead | None = None
    anchor_hash: str | None = None

    def bad(kind: Tampering, seq: int, at: int, verified: AuditHead | None) -> AuditVerification:
        count = 0 if verified is None else verified.seq
        return AuditVerification(False, count, seq, kind, at, verified)

    for line in lines:
        line_no += 1
        if not line.endswith(b"\n"):
            return bad(Tampering.TRUNCATED_LINE, expected, line_no, head)
        record = _parse_record(line)
        if record is None:
            return bad(Tampering.BAD_JSON, expected, line_no, head)
        if record_hash(record) != record["hash"]:
            return bad(Tampering.EDITED, expected, line_no, head)
        seq = record["seq"]
        if seq == expected and record["prev"] == prev:
            before_head, head = head, AuditHead(seq, record["hash"])
            if anchor is not None and seq == anchor.seq:
                anchor_hash = record["hash"]
            expected, prev = expected + 1, record["hash"]
            continue
        if seq < expected:
            return bad(Tampering.INSERTED, expected, line_no, head)
        if seq == expected:
            # Right number, wrong link: a forged record slipped in before the real one, or
            # the previous record was edited and its hash recomputed.
            following = _intact(next(lines, b""))
            if following is not None and following["seq"] == seq and following["prev"] == prev:
                return bad(Tampering.INSERTED, expected, line_no, head)
            if head is None:
                return bad(Tampering.EDITED, expected, line_no, None)
            return bad(Tampering.EDITED, expected - 1, line_no - 1, before_head)
        for rest in lines:
            later = _intact(rest)
            if later is not None and expected <= later["seq"] < seq:
                return bad(Tampering.REORDERED, expected, line_no, head)
        return bad(Tampering.REMOVED, expected, line_no, head)

    if anchor is not None:
        if expected - 1 < anchor.seq:
            return bad(Tampering.REMOVED, expected, line_no + 1, head)
        if anchor_hash != anchor.hash:
            # Rewritten and re-chained somewhere up to the anchor: nothing can be trusted.
            return AuditVerification(False, 0, 1, Tampering.EDITED)
    return AuditVerification(True, expected - 1, head=head)
