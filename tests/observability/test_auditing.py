"""The gateway's auditor: events are queued by the call and written by the log's thread."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.observability.audit_log import AuditEvent, FsyncPolicy, verify_audit_log
from gateway.observability.auditing import Auditor


def _event(n: int) -> AuditEvent:
    return AuditEvent(actor="spiffe://tongban/region/440000", action="test", outcome=f"OK-{n}")


async def test_flush_waits_for_every_recorded_event(tmp_path: Path) -> None:
    auditor = Auditor.open(tmp_path / "audit.jsonl", tmp_path / "audit.key", FsyncPolicy.NEVER)
    for n in range(50):
        auditor.record(_event(n))
    await auditor.flush()
    assert auditor.log is not None
    assert auditor.log.head.seq == 50
    await auditor.aclose()
    assert verify_audit_log(tmp_path / "audit.jsonl").records_checked == 50


async def test_a_lost_record_is_logged_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auditor = Auditor.open(tmp_path / "audit.jsonl", tmp_path / "audit.key", FsyncPolicy.NEVER)
    await auditor.aclose()
    with caplog.at_level(logging.ERROR, logger="gateway.observability.auditing"):
        auditor.record(_event(1))  # the call that caused it is not failed
    assert "AUDIT RECORD LOST" in caplog.text


async def test_an_auditor_without_a_log_records_nothing() -> None:
    auditor = Auditor(None)
    auditor.record(_event(1))
    await auditor.flush()
    await auditor.aclose()
