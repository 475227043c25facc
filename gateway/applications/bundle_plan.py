"""What a bundle (一件事) does next, and what state it is in, from its theme and its members.

Invariants:
- A member leaves WAITING only here: released when every member it comes after has
  COMPLETED; cancelled when one of them ended any other way (rejected, failed, cancelled,
  withdrawn), naming that member. Cancellation runs down the theme's order in one step: the
  dependants of a cancelled member are cancelled with it, each naming the member that stopped
  the chain.
- A withdrawn bundle releases nothing.
- The bundle's state is a function of its members' states and whether it was withdrawn:
  IN_PROGRESS while any member is not terminal, then COMPLETED, PARTIALLY_COMPLETED or FAILED
  by how many completed; WITHDRAWN once the applicant withdrew it.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.api.v1 import application_pb2, bundle_pb2
from gateway.applications import lifecycle
from gateway.catalog.model import Theme

_COMPLETED = application_pb2.APPLICATION_STATE_COMPLETED
_WAITING = application_pb2.APPLICATION_STATE_WAITING
_CANCELLED = application_pb2.APPLICATION_STATE_CANCELLED


@dataclass(frozen=True, slots=True)
class Cancel:
    """A waiting member that will never run."""

    member_id: str
    stopped_by: str
    """The member whose end stopped it (first in the theme's order of those it waits for)."""
    reason: str
    """`PREREQUISITE_<STATE>` of the stopping member, e.g. `PREREQUISITE_REJECTED`."""


@dataclass(frozen=True, slots=True)
class Step:
    """What to do now."""

    release: tuple[str, ...] = ()
    """Waiting members whose every prerequisite completed, in the theme's order."""
    cancel: tuple[Cancel, ...] = ()
    """Waiting members to cancel, in the theme's order."""


def next_step(theme: Theme, states: Mapping[str, int], *, withdrawn: bool = False) -> Step:
    """The members to release and to cancel, given every member's state."""
    current = dict(states)
    stopped: dict[str, Cancel] = {}
    changed = True
    while changed:  # a cancellation may stop the members after it: run to a fixed point
        changed = False
        for member in theme.members:
            if current.get(member.id) != _WAITING:
                continue
            for before in member.after:
                state = current.get(before, _WAITING)
                if not lifecycle.is_terminal(state) or state == _COMPLETED:
                    continue
                chain = stopped.get(before)
                stopped[member.id] = Cancel(
                    member.id,
                    chain.stopped_by if chain else before,
                    chain.reason if chain else f"PREREQUISITE_{_state_name(state)}",
                )
                current[member.id] = _CANCELLED
                changed = True
                break
    cancels = list(stopped.values())
    order = {m.id: i for i, m in enumerate(theme.members)}
    cancels.sort(key=lambda c: order[c.member_id])
    if withdrawn:
        return Step(cancel=tuple(cancels))
    release = tuple(
        m.id
        for m in theme.members
        if current.get(m.id) == _WAITING and all(current.get(b) == _COMPLETED for b in m.after)
    )
    return Step(release=release, cancel=tuple(cancels))


def bundle_state(states: Mapping[str, int], *, withdrawn: bool) -> int:
    """The bundle's `BundleState` from its members' states."""
    if withdrawn:
        return bundle_pb2.BUNDLE_STATE_WITHDRAWN
    if not all(lifecycle.is_terminal(s) for s in states.values()):
        return bundle_pb2.BUNDLE_STATE_IN_PROGRESS
    completed = sum(1 for s in states.values() if s == _COMPLETED)
    if completed == len(states):
        return bundle_pb2.BUNDLE_STATE_COMPLETED
    if completed:
        return bundle_pb2.BUNDLE_STATE_PARTIALLY_COMPLETED
    return bundle_pb2.BUNDLE_STATE_FAILED


def is_finished(states: Mapping[str, int]) -> bool:
    """Whether every member is terminal."""
    return all(lifecycle.is_terminal(s) for s in states.values())


def _state_name(state: int) -> str:
    name = application_pb2.ApplicationState.Name(application_pb2.ApplicationState.ValueType(state))
    return name.removeprefix("APPLICATION_STATE_")
