"""A run of the kit: connect as the gateway, serve the gateway's side if asked, run every case
in order.

Invariants:
- The province is called with the gateway's client certificate (or in plaintext when the run
  says so); a province that cannot be reached at all stops the run (`KitError`) instead of
  failing every case alike.
- Every case ends in a result, whatever happened inside it: an error it did not ask for fails
  it as unexpected; nothing escapes as a traceback.
- A case whose `requires` did not pass, or whose `needs` the run does not meet, is skipped and
  says why.
- The channel and the gateway side are closed when the run ends, however it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import cast

import grpc

from gateway.api.v1 import region_pb2_grpc
from gateway.security.tls import ServerTlsFiles
from gateway.tools.conformance.cases import CASES, Case
from gateway.tools.conformance.gateway_side import GatewaySide
from gateway.tools.conformance.probes import (
    KitOptions,
    Nonconformance,
    Probe,
    Session,
    describe,
    tls_channel,
)
from gateway.tools.conformance.results import CaseResult, Outcome

log = logging.getLogger(__name__)


class KitError(Exception):
    """The run cannot start: the province is unreachable or the gateway side cannot listen."""

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable
        """True when the province was not reached; False when the gateway side cannot listen."""


def open_channel(options: KitOptions) -> grpc.aio.Channel:
    """A channel to the province, as the gateway (or in plaintext)."""
    tls = options.tls
    if tls is None:
        return grpc.aio.insecure_channel(options.target)
    return tls_channel(options.target, tls, tls.cert, tls.key)


async def run_kit(
    options: KitOptions,
    *,
    cases: Sequence[Case] = CASES,
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Runs `cases` against the province; `on_result` hears each result as it is known."""
    async with AsyncExitStack() as stack:
        channel = open_channel(options)
        stack.push_async_callback(channel.close)
        try:
            async with asyncio.timeout(options.call_timeout):
                await channel.channel_ready()
        except TimeoutError:
            raise KitError(
                f"cannot connect to {options.target} within {options.call_timeout:g} s: is it "
                "listening"
                + (", and does its certificate chain to the CA given?" if options.tls else "?"),
                unreachable=True,
            ) from None
        side = None
        if options.gateway_side is not None:
            tls = options.tls
            side = GatewaySide(
                options.region, None if tls is None else ServerTlsFiles(tls.ca, tls.cert, tls.key)
            )
            host, port = options.gateway_side
            try:
                await side.start(host, port)
            except OSError as error:
                raise KitError(f"the gateway side: {error}", unreachable=False) from None
            stack.push_async_callback(side.stop)
        session = Session(
            options,
            cast(
                "region_pb2_grpc.RegionServiceAsyncStub",
                region_pb2_grpc.RegionServiceStub(channel),
            ),
            side,
        )
        results: list[CaseResult] = []
        for case in cases:
            result = await _run_case(case, session, results)
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results


async def _run_case(case: Case, session: Session, earlier: Sequence[CaseResult]) -> CaseResult:
    failed_first = [
        r.name for r in earlier if r.name in case.requires and r.outcome is not Outcome.PASSED
    ]
    reason = case.needs(session.options)
    if failed_first:
        reason = f"it relies on {', '.join(failed_first)}, which did not pass"
    if reason is not None:
        return CaseResult(case.name, case.rule, Outcome.SKIPPED, problem=reason)
    probe = Probe(session)
    started = time.monotonic()
    outcome, problem = Outcome.PASSED, ""
    try:
        await case.check(probe)
    except Nonconformance as broken:
        outcome, problem = Outcome.FAILED, str(broken)
    except grpc.aio.AioRpcError as error:
        outcome, problem = Outcome.FAILED, f"unexpected {describe(error)}: {error.details()}"
    except Exception as error:  # a province's answer the kit could not even read
        log.debug("case %s", case.name, exc_info=error)
        outcome, problem = Outcome.FAILED, f"unexpected {type(error).__name__}: {error}"
    sent, got = probe.story
    return CaseResult(case.name, case.rule, outcome, sent, got, problem, time.monotonic() - started)
