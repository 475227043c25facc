"""What a bundle does next and what state it is in: pure, every case written out by hand."""

from __future__ import annotations

import pytest

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import bundle_pb2
from gateway.applications.bundle_plan import Cancel, Step, bundle_state, is_finished, next_step
from gateway.catalog.model import Theme, ThemeMember, TimeLimit

W, R, D = (
    pb.APPLICATION_STATE_WAITING,
    pb.APPLICATION_STATE_RECEIVED,
    pb.APPLICATION_STATE_DELIVERED,
)
A, J, C = (
    pb.APPLICATION_STATE_ACCEPTED,
    pb.APPLICATION_STATE_REJECTED,
    pb.APPLICATION_STATE_COMPLETED,
)
F, X, WD = (
    pb.APPLICATION_STATE_FAILED,
    pb.APPLICATION_STATE_CANCELLED,
    pb.APPLICATION_STATE_WITHDRAWN,
)

# a ─┐
#    ├─► c ─► d
# b ─┘
THEME = Theme(
    code="T001",
    name="t",
    description="",
    promised_time_limit=TimeLimit(10, "WORKING_DAYS"),
    members=(
        ThemeMember("a", "000000000000", "insured"),
        ThemeMember("b", "000000000000", "transfer_out"),
        ThemeMember("c", "000000000000", "residence", ("a", "b")),
        ThemeMember("d", "000000000000", "residence", ("c",)),
    ),
)


def states(a: int, b: int, c: int, d: int) -> dict[str, int]:
    return {"a": a, "b": b, "c": c, "d": d}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (states(D, D, W, W), Step()),
        (states(C, A, W, W), Step()),
        (states(C, C, W, W), Step(release=("c",))),
        (states(C, C, C, W), Step(release=("d",))),
        (states(C, C, D, W), Step()),
        (
            states(J, D, W, W),
            Step(
                cancel=(
                    Cancel("c", "a", "PREREQUISITE_REJECTED"),
                    Cancel("d", "a", "PREREQUISITE_REJECTED"),
                )
            ),
        ),
        (
            states(C, F, W, W),
            Step(
                cancel=(
                    Cancel("c", "b", "PREREQUISITE_FAILED"),
                    Cancel("d", "b", "PREREQUISITE_FAILED"),
                )
            ),
        ),
        (states(C, C, WD, W), Step(cancel=(Cancel("d", "c", "PREREQUISITE_WITHDRAWN"),))),
        (states(C, C, X, W), Step(cancel=(Cancel("d", "c", "PREREQUISITE_CANCELLED"),))),
        (states(C, C, J, X), Step()),
    ],
)
def test_next_step(given: dict[str, int], expected: Step) -> None:
    assert next_step(THEME, given) == expected


def test_a_withdrawn_bundle_releases_nothing_but_still_cancels() -> None:
    assert next_step(THEME, states(C, C, W, W), withdrawn=True) == Step()
    assert next_step(THEME, states(J, C, W, W), withdrawn=True).cancel[0] == Cancel(
        "c", "a", "PREREQUISITE_REJECTED"
    )


@pytest.mark.parametrize(
    ("given", "withdrawn", "expected"),
    [
        (states(D, D, W, W), False, bundle_pb2.BUNDLE_STATE_IN_PROGRESS),
        (states(C, C, C, A), False, bundle_pb2.BUNDLE_STATE_IN_PROGRESS),
        (states(C, C, C, C), False, bundle_pb2.BUNDLE_STATE_COMPLETED),
        (states(J, C, X, X), False, bundle_pb2.BUNDLE_STATE_PARTIALLY_COMPLETED),
        (states(J, F, X, X), False, bundle_pb2.BUNDLE_STATE_FAILED),
        (states(A, D, W, W), True, bundle_pb2.BUNDLE_STATE_WITHDRAWN),
        (states(C, C, C, C), True, bundle_pb2.BUNDLE_STATE_WITHDRAWN),
    ],
)
def test_bundle_state(given: dict[str, int], withdrawn: bool, expected: int) -> None:
    assert bundle_state(given, withdrawn=withdrawn) == expected
    assert is_finished(given) == (
        expected not in (bundle_pb2.BUNDLE_STATE_IN_PROGRESS,)
        and all(s in (J, C, F, X, WD) for s in given.values())
    )
