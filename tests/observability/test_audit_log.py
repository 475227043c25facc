"""The audit log: the chain, its verification against each kind of tampering, personal data."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.observability.audit_log import (
    GENESIS,
    AuditEvent,
    AuditHead,
    AuditLog,
    AuditLogError,
    FsyncPolicy,
    Tampering,
    canonical_json,
    record_hash,
    verify_audit_log,
)

KEY = b"k" * 32


def citizen_id(rng: random.Random) -> str:
    """A valid 公民身份号码 (GB 11643 check character), born 1950-2005."""
    body = (
        f"{rng.choice([11, 31, 44, 51])}0{rng.randint(100, 999)}"
        f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        f"{rng.randint(0, 999):03d}"
    )
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def event(n: int, applicant_id: str = "") -> AuditEvent:
    return AuditEvent(
        actor="spiffe://tongban/region/440000",
        action="ApplicationService.SubmitApplication",
        outcome="OK",
        application_id=f"app-{n}",
        request_id=f"req-{n}",
        region_codes=("440000", "110000"),
        catalog_version="2026.1",
        personal={"applicant_id": applicant_id} if applicant_id else {},
    )


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(path)]


def write_log(path: Path, count: int) -> None:
    with AuditLog(path, KEY) as log:
        for n in range(1, count + 1):
            log.append(event(n))


# -- The chain -----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", list(FsyncPolicy))
def test_records_form_a_hash_chain(tmp_path: Path, policy: FsyncPolicy) -> None:
    path = tmp_path / "audit.jsonl"
    clock = iter(datetime(2026, 1, 1, 8, 0, s, tzinfo=UTC) for s in range(10))
    with AuditLog(path, KEY, fsync=policy, clock=lambda: next(clock)) as log:
        returned = [log.append(event(n)) for n in (1, 2, 3)]
        assert log.head == AuditHead(3, returned[-1].hash)
    written = records(path)
    assert [r.to_json() for r in returned] == written
    assert [r["seq"] for r in written] == [1, 2, 3]
    assert written[0]["prev"] == GENESIS
    assert written[0]["time"] == "2026-01-01T08:00:00.000000+00:00"
    for before, after in itertools.pairwise(written):
        assert after["prev"] == before["hash"]
    for record, line in zip(written, lines(path), strict=True):
        assert record["hash"] == record_hash(record)
        assert line == canonical_json(record) + b"\n"  # sorted keys, no spaces, one line
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert verify_audit_log(path).ok


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["广东", 2]}) == '{"a":["广东",2],"b":1}'.encode()


async def test_a_clean_log_of_1000_records_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    rng = random.Random(7)
    ids = [citizen_id(rng) for _ in range(1000)]
    async with AuditLog(path, KEY) as log:
        # Submissions from many tasks: serialized, batched, none lost.
        async def submit(n: int) -> None:
            log.submit(event(n, ids[n - 1]))

        await asyncio.gather(*(submit(n) for n in range(1, 1001)))
        await asyncio.wrap_future(log.barrier())
        head = log.head
    written = records(path)
    assert [r["seq"] for r in written] == list(range(1, 1001))
    assert head == AuditHead(1000, written[-1]["hash"])
    result = verify_audit_log(path)
    assert result.ok
    assert result.records_checked == 1000
    assert result.head == head
    assert verify_audit_log(path, expected_head=head).ok
    # Personal data only as keyed digests: no ID number anywhere in the file.
    text = path.read_text()
    assert not any(i in text for i in ids)
    assert not any(i[:17] in text for i in ids)
    digests = {r["personal"]["applicant_id"] for r in records(path)}
    assert len(digests) == len(set(ids))


def test_appends_from_threads_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, KEY) as log:
        threads = [
            threading.Thread(target=lambda t=t: [log.append(event(t * 100 + i)) for i in range(50)])
            for t in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    result = verify_audit_log(path)
    assert (result.ok, result.records_checked) == (True, 400)


def test_submitted_events_are_written_in_submission_order(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lost: list[BaseException] = []
    with AuditLog(path, KEY, on_lost=lost.append) as log:
        for n in range(1, 301):
            log.submit(event(n))
        log.barrier().result(timeout=30)
        assert log.head.seq == 300  # the barrier waited for every earlier submission
        log.submit(event(301))  # still queued at close: close writes it
    assert [r["application_id"] for r in records(path)] == [f"app-{n}" for n in range(1, 302)]
    assert verify_audit_log(path).ok
    assert lost == []


def test_a_lingering_log_writes_a_moment_of_events_at_once(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, KEY, linger=1.0) as log:
        for n in range(1, 6):
            log.submit(event(n))
        assert log.head.seq == 0  # still gathering
        log.barrier().result(timeout=30)
        assert log.head.seq == 5
    assert [r["seq"] for r in records(path)] == [1, 2, 3, 4, 5]
    assert verify_audit_log(path).ok


def test_a_record_submitted_after_close_is_reported_lost(tmp_path: Path) -> None:
    lost: list[BaseException] = []
    log = AuditLog(tmp_path / "audit.jsonl", KEY, on_lost=lost.append)
    log.close()
    log.submit(event(1))  # never raises into the caller
    assert [str(e) for e in lost] == ["the audit log is closed"]
    assert log.barrier().result(timeout=5) is None


def test_submitted_records_that_cannot_be_written_are_reported_lost() -> None:
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("needs /dev/full")
    lost: list[BaseException] = []
    log = AuditLog(full, KEY, on_lost=lost.append)
    log.submit(event(1))
    log.barrier().result(timeout=5)
    log.submit(event(2))
    log.barrier().result(timeout=5)
    log.close()
    assert len(lost) == 2
    assert "cannot write" in str(lost[0])
    assert "failed earlier" in str(lost[1])


def test_an_event_that_cannot_be_staged_does_not_stop_the_others(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lost: list[BaseException] = []
    with AuditLog(path, KEY, on_lost=lost.append) as log:
        log.submit(event(1))
        log.submit(AuditEvent(actor="a", action="b", outcome="c", personal={"id": None}))  # type: ignore[dict-item]
        log.submit(event(3))
    assert [r["application_id"] for r in records(path)] == ["app-1", "app-3"]
    assert len(lost) == 1
    assert verify_audit_log(path).ok


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 5)
    with AuditLog(path, KEY) as log:
        assert log.head.seq == 5
        record = log.append(event(6))
    assert record.seq == 6
    assert record.prev == records(path)[4]["hash"]
    assert verify_audit_log(path).records_checked == 6


def test_one_writer_per_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, KEY), pytest.raises(AuditLogError, match="another process"):
        AuditLog(path, KEY)


def test_refuses_to_continue_a_torn_or_damaged_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 3)
    whole = path.read_bytes()
    path.write_bytes(whole[:-10])
    with pytest.raises(AuditLogError, match="torn"):
        AuditLog(path, KEY)
    path.write_bytes(whole.replace(b'"outcome":"OK"', b'"outcome":"NO"'))
    with pytest.raises(AuditLogError, match="damaged"):
        AuditLog(path, KEY)


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", KEY)
    log.close()
    log.close()  # idempotent
    with pytest.raises(AuditLogError, match="closed"):
        log.append(event(1))


def test_after_a_write_error_every_append_fails(tmp_path: Path) -> None:
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("needs /dev/full")
    log = AuditLog(full, KEY)
    with pytest.raises(AuditLogError, match="cannot write"):
        log.append(event(1))
    with pytest.raises(AuditLogError, match="failed earlier"):
        log.append(event(2))
    log.close()


def test_key_must_be_long_enough(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        AuditLog(tmp_path / "audit.jsonl", b"short")


# -- Personal data -------------------------------------------------------------------------


def test_personal_data_is_a_keyed_digest(tmp_path: Path) -> None:
    number = citizen_id(random.Random(1))
    with AuditLog(tmp_path / "a.jsonl", KEY) as log:
        record = log.append(event(1, number))
        digest = log.digest_personal(number)
    with AuditLog(tmp_path / "b.jsonl", b"another key, 32 bytes long......") as other:
        assert other.digest_personal(number) != digest
    assert record.personal == {"applicant_id": digest}
    assert len(digest) == 64
    assert number not in (tmp_path / "a.jsonl").read_text()


@pytest.mark.parametrize("field", ["request_id", "application_id", "outcome", "actor"])
def test_an_id_number_in_clear_is_redacted_anywhere(tmp_path: Path, field: str) -> None:
    number = citizen_id(random.Random(2))
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, KEY) as log:
        record = log.append(_with(event(1), field, f"x-{number}"))
        digest = log.digest_personal(number)
        # Not an ID number: 21 digits, a wrong check character, an impossible birth date.
        kept = [
            "123456789012345678901",
            number[:17] + ("0" if number[17] != "0" else "1"),
            number[:10] + "1399" + number[14:],
        ]
        untouched = [log.append(_with(event(2), field, value)) for value in kept]
    assert getattr(record, field) == f"x-[redacted:{digest}]"
    assert records(path)[0][field] == f"x-[redacted:{digest}]"
    assert number not in path.read_text()
    assert [getattr(r, field) for r in untouched] == kept
    assert verify_audit_log(path).ok


def _with(base: AuditEvent, field: str, value: str) -> AuditEvent:
    values = {name: getattr(base, name) for name in AuditEvent.__dataclass_fields__}
    values[field] = value
    return AuditEvent(**values)


# -- Tampering -----------------------------------------------------------------------------


@pytest.fixture
def log10(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write_log(path, 10)
    return path


def rewrite(path: Path, new_lines: list[bytes]) -> None:
    path.write_bytes(b"".join(new_lines))


def relink(items: list[dict[str, Any]]) -> list[bytes]:
    """What a careful forger does: recompute every hash after a change."""
    prev = GENESIS
    out = []
    for original in items:
        item = {**original, "prev": prev}
        item["hash"] = record_hash(item)
        prev = item["hash"]
        out.append(canonical_json(item) + b"\n")
    return out


def assert_broken(path: Path, kind: Tampering, first_bad_seq: int, checked: int) -> None:
    result = verify_audit_log(path)
    assert (result.ok, result.kind, result.first_bad_seq, result.records_checked) == (
        False,
        kind,
        first_bad_seq,
        checked,
    )


def test_edited_field(log10: Path) -> None:
    items = lines(log10)
    items[4] = items[4].replace(b'"outcome":"OK"', b'"outcome":"NOT_OWN_REGION"')
    rewrite(log10, items)
    assert_broken(log10, Tampering.EDITED, 5, 4)


def test_edited_and_rehashed_record(log10: Path) -> None:
    items = lines(log10)
    record = json.loads(items[4])
    record["actor"] = "spiffe://tongban/ops/mallory"
    record["hash"] = record_hash(record)
    items[4] = canonical_json(record) + b"\n"
    rewrite(log10, items)
    # Found at record 6, whose `prev` no longer matches; record 5 is the untrusted one.
    assert_broken(log10, Tampering.EDITED, 5, 4)
    assert verify_audit_log(log10).line == 5


def test_removed_middle_record(log10: Path) -> None:
    items = lines(log10)
    del items[4]
    rewrite(log10, items)
    assert_broken(log10, Tampering.REMOVED, 5, 4)


def test_swapped_records(log10: Path) -> None:
    items = lines(log10)
    items[3], items[6] = items[6], items[3]
    rewrite(log10, items)
    assert_broken(log10, Tampering.REORDERED, 4, 3)


def test_duplicated_record(log10: Path) -> None:
    items = lines(log10)
    items.insert(5, items[4])
    rewrite(log10, items)
    assert_broken(log10, Tampering.INSERTED, 6, 5)


def test_forged_record_inserted_with_the_next_number(log10: Path) -> None:
    items = lines(log10)
    forged = json.loads(items[5])  # a copy of record 6, changed, with a valid own hash
    forged["outcome"] = "OK-FORGED"
    forged["prev"] = "f" * 64
    forged["hash"] = record_hash(forged)
    items.insert(5, canonical_json(forged) + b"\n")
    rewrite(log10, items)
    assert_broken(log10, Tampering.INSERTED, 6, 5)


def test_truncated_last_line(log10: Path) -> None:
    rewrite(log10, [*lines(log10)[:-1], lines(log10)[-1][:-20]])
    assert_broken(log10, Tampering.TRUNCATED_LINE, 10, 9)


def test_bad_json_line(log10: Path) -> None:
    items = lines(log10)
    items.insert(2, b"not json\n")
    rewrite(log10, items)
    assert_broken(log10, Tampering.BAD_JSON, 3, 2)


def test_a_removed_tail_needs_the_anchor(log10: Path) -> None:
    head = verify_audit_log(log10).head
    assert head is not None
    rewrite(log10, lines(log10)[:-2])
    assert verify_audit_log(log10).ok  # a shorter chain is still a chain
    result = verify_audit_log(log10, expected_head=head)
    assert (result.ok, result.kind, result.first_bad_seq) == (False, Tampering.REMOVED, 9)


def test_a_rebuilt_chain_needs_the_anchor(log10: Path) -> None:
    head = verify_audit_log(log10).head
    assert head is not None
    items = records(log10)
    items[2]["outcome"] = "REWRITTEN"
    rewrite(log10, relink(items))
    assert verify_audit_log(log10).ok  # self-consistent again
    result = verify_audit_log(log10, expected_head=head)
    assert (result.ok, result.kind) == (False, Tampering.EDITED)
