"""The one seam through which domain code reports what happened; observers listen to it.

Invariants:
- Domain objects take an `Events` at construction and call `emit(event)`; they never know who
  listens. Metrics, the audit log, the access log, watch streams, region health and the
  dispatcher's wake-up are listeners, registered by the process wiring with `subscribe`.
- An event is a frozen, slotted dataclass of plain values (and, for application events, the
  `Application` as stored, which listeners must not change).
- A listener runs synchronously in the emitting task, so context variables (the current RPC,
  the caller's identity) are those of the cause. It must be cheap and must not block.
- A listener that raises is logged and skipped: observation never changes an outcome.
- No personal data beyond what the `Application` itself holds travels in an event; listeners
  that write anywhere (logs, audit) are responsible for masking or digesting it.
- A `seconds` field is the wall time of what ended as the event was emitted, so a listener
  may place it at [now - seconds, now].
- Every `…Started` event is followed, in the same task, by its `…Finished` (emitted in a
  `finally`), with nothing started in between left unfinished: a listener may hold something
  open (a span, a context) from one to the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from gateway.api.v1 import application_pb2, bundle_pb2

log = logging.getLogger(__name__)


class Event:
    """Base of every event type."""

    __slots__ = ()


E = TypeVar("E", bound=Event)


# -- applications -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplicationSubmitted(Event):
    """A new application was accepted and committed (before its first delivery attempt)."""

    application: application_pb2.Application
    seconds: float
    """Wall time of the commit: the claim of its idempotency key and the insert."""


@dataclass(frozen=True, slots=True)
class ApplicationChanged(Event):
    """A stored application changed state (delivered, queued, failed, reported, expired)."""

    application: application_pb2.Application


@dataclass(frozen=True, slots=True)
class SubmissionAnswered(Event):
    """A submission was answered with an application, new or replayed."""

    application: application_pb2.Application
    replayed: bool


@dataclass(frozen=True, slots=True)
class SubmissionRefused(Event):
    """A submission was refused with a domain error."""

    request_id: str
    target_region: str
    code: str
    """The gRPC status code's name (`INVALID_ARGUMENT`, …)."""
    reason: str
    """The ErrorInfo reason."""


# -- bundles (一件事) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BundleSubmitted(Event):
    """A new bundle and its members were committed (before any member was delivered)."""

    bundle: bundle_pb2.Bundle


@dataclass(frozen=True, slots=True)
class BundleChanged(Event):
    """A bundle's derived state changed, or it was withdrawn."""

    bundle: bundle_pb2.Bundle


@dataclass(frozen=True, slots=True)
class FlowRefused(Event):
    """A licence did not reach a bundle member: outside the consent, not issued, not found at
    its province, or not valid."""

    bundle_id: str
    member_id: str
    material_id: str
    reason: str
    """Why, e.g. `FLOW_NOT_CONSENTED`, `FLOW_LICENSE_INVALID`."""


@dataclass(frozen=True, slots=True)
class BundleRated(Event):
    """An applicant rated a finished bundle (好差评)."""

    theme_code: str
    region_code: str
    """The member province rated; empty for the whole bundle."""
    score: int
    reasons: tuple[str, ...]
    """`RatingReason` names."""


# -- delivery to provinces ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryStarted(Event):
    """A delivery call (its attempts and the backoff between them) begins; `DeliveryFinished`
    follows."""

    region_code: str
    application_id: str


@dataclass(frozen=True, slots=True)
class AttemptStarted(Event):
    """A delivery attempt (numbered from 1 within its call) is about to call the province;
    `AttemptFinished` follows."""

    region_code: str
    number: int


@dataclass(frozen=True, slots=True)
class AttemptFinished(Event):
    """A delivery attempt ended."""

    region_code: str
    number: int
    code: str
    """The gRPC status code's name (`OK`, `UNAVAILABLE`, `CANCELLED`, …)."""
    reason: str
    """The province's ErrorInfo reason, or the gateway's (`REGION_NOT_CONNECTED`); empty for
    none."""


@dataclass(frozen=True, slots=True)
class RetryGranted(Event):
    """A retry was granted for `reason` (one of `routing.policy.REASONS`)."""

    region_code: str
    reason: str


@dataclass(frozen=True, slots=True)
class RetryBudgetExhausted(Event):
    """A retry was refused because the province's retry budget is spent."""

    region_code: str


@dataclass(frozen=True, slots=True)
class PushbackHonoured(Event):
    """The province said when (or whether) to retry, and was obeyed."""

    region_code: str


@dataclass(frozen=True, slots=True)
class DeliveryFinished(Event):
    """A delivery call (all its attempts) ended, or was cancelled (`state` 0)."""

    region_code: str
    state: int
    """DELIVERED, QUEUED, FAILED, or 0 when the call was cancelled."""
    seconds: float
    """Wall time of the call: attempts and the backoff between them."""
    attempts: int
    """Calls made to the province."""
    reason: str
    """Why not delivered (`DeliveryOutcome.reason`); empty when delivered or cancelled."""


@dataclass(frozen=True, slots=True)
class RegionCallFinished(Event):
    """One southbound RPC (one attempt) ended."""

    region_code: str
    method: str
    """The RegionService method's name."""
    code: str
    """The gRPC status code's name (`OK`, `UNAVAILABLE`, …)."""
    seconds: float


@dataclass(frozen=True, slots=True)
class BreakerChanged(Event):
    """A province's circuit breaker moved from `old` to `new` (`BreakerState` values)."""

    region_code: str
    old: int
    new: int


# -- catalog, licences, access --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CodeResolved(Event):
    """A local code's resolution ended: `resolved`, or the error's reason."""

    result: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CatalogPublished(Event):
    """A catalog version (`kind` `version`) or an implementation list (`region`) was
    published, or refused (`activated` False)."""

    kind: str
    activated: bool
    action: str = ""
    """The audited action (`CatalogService.PublishCatalogVersion`, …)."""
    version: str = ""
    region_code: str = ""


@dataclass(frozen=True, slots=True)
class LicenseVerified(Event):
    """A licence verification ended with `verdict` (a `Verdict` name)."""

    verdict: str
    seconds: float
    """Wall time of the verification, key and status-list fetches included."""


@dataclass(frozen=True, slots=True)
class AccessDenied(Event):
    """A call was refused by the authorization policy, the deny list or a rate limit."""

    actor: str
    method: str
    reason: str


# -- the seam -------------------------------------------------------------------------------


class Events(Protocol):
    """What domain code holds: somewhere to emit events."""

    def emit(self, event: Event) -> None:
        """Hands `event` to its listeners, synchronously; never raises."""


class EventBus:
    """Routes each event to the listeners subscribed to its exact type."""

    def __init__(self) -> None:
        self._listeners: dict[type[Event], tuple[Callable[[Event], None], ...]] = {}

    def subscribe(self, kind: type[E], listener: Callable[[E], None]) -> None:
        """Calls `listener` with every event of type `kind` from now on."""
        current = self._listeners.get(kind, ())
        self._listeners[kind] = (*current, listener)  # type: ignore[arg-type]

    def emit(self, event: Event) -> None:
        for listener in self._listeners.get(type(event), ()):
            try:
                listener(event)
            except Exception:
                log.exception("an event listener failed on %s", type(event).__name__)


class _Discard:
    def emit(self, event: Event) -> None:
        pass


NO_EVENTS: Events = _Discard()
"""Events that nobody hears: the default for domain objects built alone (tests, tools)."""
