"""The one place errors become statuses, seen from a client of a real gateway: every refusal
carries the reason's Chinese message for a clerk beside the English one."""

from __future__ import annotations

import grpc
import pytest
from conftest import World, rich_error
from google.rpc.error_details_pb2 import LocalizedMessage
from grpc_status import rpc_status

from gateway.api.v1 import catalog_pb2
from gateway.errors import MESSAGES_ZH


def localized(error: grpc.aio.AioRpcError) -> list[LocalizedMessage]:
    status = rpc_status.from_call(error)
    assert status is not None
    found = []
    for detail in status.details:
        if detail.Is(LocalizedMessage.DESCRIPTOR):
            message = LocalizedMessage()
            detail.Unpack(message)
            found.append(message)
    return found


async def test_a_refusal_carries_its_reason_in_chinese_beside_the_english_message(
    world: World,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.catalog.ResolveLocalCode(
            catalog_pb2.ResolveLocalCodeRequest(region_code="440000", local_code="NO-SUCH-CODE")
        )
    info, _ = rich_error(caught.value)
    assert info.reason == "LOCAL_CODE_NOT_FOUND"
    assert "NO-SUCH-CODE" in (caught.value.details() or "")  # English, with the specifics
    assert [(m.locale, m.message) for m in localized(caught.value)] == [
        ("zh-CN", MESSAGES_ZH["LOCAL_CODE_NOT_FOUND"])
    ]


async def test_a_validation_refusal_keeps_its_violations_and_gains_the_message(
    world: World,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await world.catalog.ResolveLocalCode(
            catalog_pb2.ResolveLocalCodeRequest(region_code="44000", local_code="X")
        )
    info, bad = rich_error(caught.value)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad is not None
    assert [v.field for v in bad.field_violations] == ["region_code"]
    assert [m.message for m in localized(caught.value)] == [MESSAGES_ZH[info.reason]]
