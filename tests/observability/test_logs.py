"""Structured logs: JSON lines with the RPC's ids, and no personal data in clear."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import grpc
import pytest
from conftest import World, eventually
from traffic import CITIZEN, NAME, TARGET, submission

from gateway.observability import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs.configure(logging.DEBUG, stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_ids_are_masked_in_message_extras_and_exceptions(captured: io.StringIO) -> None:
    log = logging.getLogger("test")
    with logs.log_context(request_id="r-1", province="510000"):
        log.info("holder %s", CITIZEN, extra={"holder": CITIZEN, "ids": [CITIZEN]})
        try:
            raise ValueError(f"bad id {CITIZEN}")
        except ValueError:
            log.exception("failed")
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert len(lines) == 2
    assert lines[0]["message"] == "holder 110105********1239"
    assert lines[0]["holder"] == "110105********1239"
    assert lines[0]["request_id"] == "r-1"
    assert lines[0]["province"] == "510000"
    assert "110105********1239" in lines[1]["exception"]
    assert CITIZEN not in captured.getvalue()


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("810000199003071237", "810000********1237"),  # 港澳台居民居住证
        ("933100199003071232", "**************1232"),  # 外国人永久居留身份证, 2023
        ("USA330619900307", "***********0307"),  # 外国人永久居留身份证, 2017
        ("110105900307123", "***********7123"),  # a 15-digit 公民身份号码
    ],
)
def test_every_kind_of_id_number_is_masked(number: str, masked: str) -> None:
    assert logs.mask(f"holder {number}, again ({number})") == f"holder {masked}, again ({masked})"


def test_longer_numbers_are_not_mistaken_for_ids() -> None:
    assert logs.mask("order 12345678901234567890") == "order 12345678901234567890"
    assert logs.mask(f"id={CITIZEN}.") == "id=110105********1239."
    assert logs.mask("code XUSA330619900307 and USA3306199003071") == (
        "code XUSA330619900307 and USA3306199003071"
    )


async def test_no_clear_id_or_name_reaches_the_log_during_a_submission(
    world: World, captured: io.StringIO
) -> None:
    response = await world.applications.SubmitApplication(submission(world, "logged-1"))
    with pytest.raises(grpc.aio.AioRpcError):
        await world.applications.SubmitApplication(
            submission(world, "logged-2", local_matter_code="NO-SUCH-CODE")
        )
    # A refusal's status is sent as the handler aborts; the outermost interceptor logs it just
    # after, so the caller may hold the error a moment before the line is written.
    await eventually(
        lambda: "submission refused" in captured.getvalue(), within=2, what="the refusal's line"
    )
    output = captured.getvalue()
    assert CITIZEN not in output
    assert NAME not in output
    entries = [json.loads(line) for line in output.splitlines()]
    answered = [e for e in entries if e["message"] == "submission answered"]
    assert len(answered) == 1
    entry = answered[0]
    assert entry["application_id"] == response.application.application_id
    assert entry["request_id"] == "logged-1"
    assert entry["province"] == TARGET
    assert entry["state"] == "APPLICATION_STATE_DELIVERED"
    refused = [e for e in entries if e["message"] == "submission refused"]
    assert [e["request_id"] for e in refused] == ["logged-2"]
