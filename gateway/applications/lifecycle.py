"""The application lifecycle: which state may follow which, and who may move it.

    RECEIVED ──► QUEUED ──► DELIVERED ──► ACCEPTED ──► COMPLETED
        │           │           │    └──────────────► COMPLETED   (即办件: done on receipt)
        │           │           └──► REJECTED                     (不予受理)
        └───────────┴──► FAILED   (refused on delivery, or expired in the queue)

    A member of a bundle (一件事) may start before RECEIVED and end by the applicant's hand:

    WAITING ──► RECEIVED                 (what it waits for completed: released)
       │
       ├──────► CANCELLED                (what it waits for did not complete, or withdrawn)
    RECEIVED, QUEUED ──► CANCELLED       (withdrawn before delivery)
    DELIVERED, ACCEPTED ──► WITHDRAWN    (withdrawn, the province agreeing)

Invariants:
- REJECTED, COMPLETED, FAILED, CANCELLED and WITHDRAWN are terminal.
- Only the gateway moves an application up to DELIVERED or FAILED, and to CANCELLED or
  WITHDRAWN; only the handling province reports ACCEPTED, REJECTED and COMPLETED.
- A WAITING application is never delivered and never reported on.
- A province's report proves delivery: a report on a RECEIVED or QUEUED application first
  records DELIVERED (the response to the delivery was lost, the case exists).
Pure: no I/O.
"""

from __future__ import annotations

from gateway.api.v1.application_pb2 import (
    APPLICATION_STATE_ACCEPTED as ACCEPTED,
)
from gateway.api.v1.application_pb2 import (
    APPLICATION_STATE_CANCELLED as CANCELLED,
)
from gateway.api.v1.application_pb2 import (
    APPLICATION_STATE_COMPLETED as COMPLETED,
)
from gateway.api.v1.application_pb2 import (
    APPLICATION_STATE_DELIVERED as DELIVERED,
)
from gateway.api.v1.application_pb2 import (
    APPLICATION_STATE_FAILED as FAILED,
)
from gateway.api.v1.application_pb2 import (
    APPLICATION_STATE_QUEUED as QUEUED,
)
from gateway.api.v1.application_pb2 import (
    APPLICATION_STATE_RECEIVED as RECEIVED,
)
from gateway.api.v1.application_pb2 import (
    APPLICATION_STATE_REJECTED as REJECTED,
)
from gateway.api.v1.application_pb2 import (
    APPLICATION_STATE_WAITING as WAITING,
)
from gateway.api.v1.application_pb2 import (
    APPLICATION_STATE_WITHDRAWN as WITHDRAWN,
)

TERMINAL = frozenset({REJECTED, COMPLETED, FAILED, CANCELLED, WITHDRAWN})
PROVINCE_REPORTABLE = frozenset({ACCEPTED, REJECTED, COMPLETED})
AWAITING_DELIVERY = frozenset({RECEIVED, QUEUED})
WITHDRAWABLE = frozenset({DELIVERED, ACCEPTED})
"""Delivered states a withdrawal asks the province about (undelivered ones are cancelled)."""

_NEXT: dict[int, frozenset[int]] = {
    WAITING: frozenset({RECEIVED, CANCELLED}),
    RECEIVED: frozenset({QUEUED, DELIVERED, FAILED, CANCELLED}),
    QUEUED: frozenset({DELIVERED, FAILED, CANCELLED}),
    DELIVERED: frozenset({ACCEPTED, REJECTED, COMPLETED, WITHDRAWN}),
    ACCEPTED: frozenset({COMPLETED, REJECTED, WITHDRAWN}),
    REJECTED: frozenset(),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
    WITHDRAWN: frozenset(),
}


def can_move(current: int, new: int) -> bool:
    """Whether `new` may directly follow `current`."""
    return new in _NEXT.get(current, frozenset())


def province_report_path(current: int, reported: int) -> tuple[int, ...] | None:
    """The states to record for a province's report, or None if it is not allowed now.

    A report of a state already reached is idempotent: an empty path.
    """
    if reported not in PROVINCE_REPORTABLE:
        return None
    if current == reported:
        return ()
    if current in AWAITING_DELIVERY:
        return (DELIVERED, reported)
    if can_move(current, reported):
        return (reported,)
    return None


def is_terminal(state: int) -> bool:
    """Whether no further change can happen."""
    return state in TERMINAL
