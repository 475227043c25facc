"""The cases: one rule of the southbound contract (proto/gateway/api/v1/region.proto) each.

Invariants:
- A case checks its one rule and leans on no other: where it needs the answer of another RPC,
  it reads only what that rule does not judge (the deadline case relies on NOT_FOUND for an
  unknown id, and says so in `requires`), so a province that breaks one rule fails one case.
- No case passes without the province having done what its rule is about. The deadline case
  sends its attempts one at a time on an idle connection, each with a 1 ms deadline, far below
  the 5 ms a case needs left (region.proto): a province that received one and did not check
  its deadline records it, so any case at all fails the rule. The report case passes only once
  a report arrived and a gateway accepted it.
- `CASES` is the order of a run: later cases may rely on earlier ones having passed.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
from cryptography import x509

from gateway.api.v1 import application_pb2, region_pb2, region_pb2_grpc
from gateway.applications import lifecycle
from gateway.licenses.keys import KEY_ALGORITHMS, parse_jwk
from gateway.licenses.status_list import decode_status_list
from gateway.licenses.token import (
    STATUS_LIST_TOKEN_TYPE,
    TokenRejected,
    numeric_date,
    read_unverified,
    status_list_uri,
)
from gateway.licenses.trust import StatusListSettings
from gateway.tools.conformance.probes import (
    APPLICANT_ID_NUMBER,
    KitOptions,
    Nonconformance,
    Probe,
    check,
    describe,
    error_shape,
    origin_for,
    short,
    tls_channel,
)

PROBE_DEADLINE = 0.001
"""Seconds of a deadline probe: a province may record a case only while 5 ms of the deadline
remain (region.proto), so it must refuse every probe it receives."""
CONCURRENT_DUPLICATES = 8
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
"""JWK members that hold private or secret key material (RFC 7518 §6)."""
CLOCK_LEEWAY = 300.0
"""Seconds a status list's `iat` may lie in the kit's future (the gateway allows at most this)."""
_STATE = application_pb2.ApplicationState.Name
_CASE_STATES = frozenset(
    {application_pb2.APPLICATION_STATE_DELIVERED} | lifecycle.PROVINCE_REPORTABLE
)


@dataclass(frozen=True, slots=True)
class Case:
    """One rule and how to check it."""

    name: str
    """Its id in lines and JUnit, e.g. `delivery.replay`."""
    rule: str
    """The rule, in one sentence."""
    check: Callable[[Probe], Awaitable[None]]
    """Returns when the province kept the rule; raises `Nonconformance` when not."""
    requires: tuple[str, ...] = ()
    """Cases that must have passed for this one to mean anything."""
    needs: Callable[[KitOptions], str | None] = lambda options: None
    """Why the run cannot check it (a missing setting), or None."""


# -- delivery ---------------------------------------------------------------------------------


async def delivery_replay(probe: Probe) -> None:
    application = probe.application()
    probe.sent(f"DeliverApplication {short(application.application_id)} attempt 1, then attempt 2")
    first = await probe.deliver(application, 1)
    probe.got(f"receipt {first.receipt_id!r} duplicate={first.duplicate}")
    again = await probe.deliver(application, 2)
    probe.got(f"receipt {again.receipt_id!r} duplicate={again.duplicate}")
    check(first.receipt_id, "the first delivery has no receipt id")
    check(not first.duplicate, "the first delivery of a new application is marked duplicate")
    check(again.receipt_id == first.receipt_id, "the replay got another receipt: a second case")
    check(again.duplicate, "the replay is not marked duplicate")
    check(
        again.receive_time == first.receive_time,
        "the replay's receive_time is not when the province first received the application",
    )


async def delivery_concurrent_duplicates(probe: Probe) -> None:
    application = probe.application()
    probe.sent(
        f"{CONCURRENT_DUPLICATES} × DeliverApplication {short(application.application_id)} "
        "at once (attempts 1…)"
    )
    answers = await asyncio.gather(
        *(probe.deliver(application, n + 1) for n in range(CONCURRENT_DUPLICATES)),
        return_exceptions=True,
    )
    failed = [a for a in answers if isinstance(a, BaseException)]
    receipts = Counter(
        a.receipt_id for a in answers if isinstance(a, region_pb2.DeliverApplicationResponse)
    )
    probe.got(
        f"receipts {dict(receipts)}"
        + (f", {len(failed)} errors: {_failure(failed[0])}" if failed else "")
    )
    check(not failed, f"{len(failed)} of the deliveries failed")
    check(
        len(receipts) == 1,
        f"{len(receipts)} different receipts for one application id: more than one case",
    )
    check(next(iter(receipts)), "the deliveries got no receipt id")


async def delivery_changed_replay(probe: Probe) -> None:
    application = probe.application()
    changed = application_pb2.Application()
    changed.CopyFrom(application)
    changed.form_fields[0].value += "-changed"
    changed.applicant.display_name += "乙"
    probe.sent(
        f"DeliverApplication {short(application.application_id)}, then the same id with "
        "another form value and applicant name, then the original again"
    )
    first = await probe.deliver(application, 1)
    probe.got(f"receipt {first.receipt_id!r}")
    error = await probe.refused(
        probe.deliver(changed, 2), "a replay with other content was answered, not refused"
    )
    again = await probe.deliver(application, 3)
    probe.got(f"receipt {again.receipt_id!r}")
    shape = error_shape(error)
    check(
        shape.code in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION),
        f"a replay with other content got {shape.code.name}, not ALREADY_EXISTS "
        "(APPLICATION_ID_REUSED) or FAILED_PRECONDITION",
    )
    check(
        len(shape.infos) == 1 and shape.infos[0].reason,
        "the refusal does not carry exactly one ErrorInfo with a reason",
    )
    check(
        again.receipt_id == first.receipt_id, "the case changed: the original got another receipt"
    )


@dataclass(frozen=True, slots=True)
class _Malformed:
    what: str
    field: str
    build: Callable[[application_pb2.Application], region_pb2.DeliverApplicationRequest]


def _with(
    change: Callable[[application_pb2.Application], None], attempt: int = 1
) -> Callable[[application_pb2.Application], region_pb2.DeliverApplicationRequest]:
    def build(application: application_pb2.Application) -> region_pb2.DeliverApplicationRequest:
        request = region_pb2.DeliverApplicationRequest(attempt=attempt)
        request.application.CopyFrom(application)
        change(request.application)
        return request

    return build


def _set(name: str, value: str) -> Callable[[application_pb2.Application], None]:
    return lambda application: setattr(application, name, value)


def _malformed(options: KitOptions) -> list[_Malformed]:
    other = origin_for(options.region)
    return [
        _Malformed(
            "no application",
            "application",
            lambda _: region_pb2.DeliverApplicationRequest(attempt=1),
        ),
        _Malformed("an empty id", "application.application_id", _with(_set("application_id", ""))),
        _Malformed(
            "an id that is not a UUID",
            "application.application_id",
            _with(_set("application_id", "not-a-uuid")),
        ),
        _Malformed(
            "another province as target",
            "application.target_region",
            _with(_set("target_region", other)),
        ),
        _Malformed(
            "no target local code",
            "application.target_local_matter_code",
            _with(_set("target_local_matter_code", "")),
        ),
        _Malformed("attempt 0", "attempt", _with(lambda _: None, attempt=0)),
    ]


async def _error_of(call: Awaitable[object]) -> grpc.aio.AioRpcError | None:
    """The error a call ended with, None when it was answered."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    return None


async def delivery_malformed(probe: Probe) -> None:
    malformed = _malformed(probe.options)
    probe.sent("DeliverApplication with " + ", ".join(m.what for m in malformed))
    answers = await asyncio.gather(
        *(_error_of(probe.send(m.build(probe.application()))) for m in malformed)
    )
    seen: list[str] = []
    problems: list[str] = []
    for m, answer in zip(malformed, answers, strict=True):
        if answer is None:
            seen.append(f"{m.what}: OK")
            problems.append(f"{m.what} was accepted")
            continue
        seen.append(f"{m.what}: {describe(answer)}")
        shape = error_shape(answer)
        if shape.code is not grpc.StatusCode.INVALID_ARGUMENT:
            problems.append(f"{m.what} got {shape.code.name}, not INVALID_ARGUMENT")
        elif [i.reason for i in shape.infos] != ["INVALID_REQUEST"]:
            problems.append(f"{m.what}: not exactly one ErrorInfo with reason INVALID_REQUEST")
        elif m.field not in {f for f, _ in shape.violations}:
            problems.append(f"{m.what}: no BadRequest violation names {m.field}")
    probe.got("; ".join(seen))
    check(not problems, "; ".join(problems))


async def delivery_deadline(probe: Probe) -> None:
    options = probe.options
    applications = [probe.application() for _ in range(options.deadline_probes)]
    later = options.deadline_grace + options.deadline_settle
    probe.sent(
        f"{len(applications)} × DeliverApplication one after another, each with a "
        f"{PROBE_DEADLINE * 1000:g} ms deadline; GetApplicationStatus of each "
        f"{options.deadline_grace:g} s and {later:g} s later"
    )
    outcomes: Counter[str] = Counter()
    for application in applications:
        outcomes[await _probe_outcome(probe, application)] += 1
    probe.got(", ".join(f"{n} {outcome}" for outcome, n in outcomes.items()))
    ids = [a.application_id for a in applications]
    await asyncio.sleep(options.deadline_grace)
    at_grace = await asyncio.gather(*(probe.has_case(i) for i in ids))
    await asyncio.sleep(options.deadline_settle)
    at_settle = await asyncio.gather(*(probe.has_case(i) for i in ids))
    late = sum(b and not a for a, b in zip(at_grace, at_settle, strict=True))
    probe.got(
        f"{sum(at_grace)} had a case after {options.deadline_grace:g} s, {late} more by {later:g} s"
    )
    check(
        not any(at_grace),
        f"{sum(at_grace)} of {len(ids)} deliveries with a {PROBE_DEADLINE * 1000:g} ms deadline "
        "left a case: a case may be recorded only while 5 ms of the deadline remain",
    )
    check(not late, f"{late} deliveries created a case after their deadline had passed")


async def _probe_outcome(probe: Probe, application: application_pb2.Application) -> str:
    """How one deadline probe ended: answered, refused by the province, or given up by the kit."""
    try:
        await probe.deliver(application, 1, seconds=PROBE_DEADLINE)
    except grpc.aio.AioRpcError as error:
        shape = error_shape(error)
        if shape.has_status:  # a status the province sent, not the kit's own deadline
            return f"refused by the province ({shape.code.name})"
        return f"given up by the kit ({shape.code.name})"
    return "answered OK"


# -- status ----------------------------------------------------------------------------------


async def status_known(probe: Probe) -> None:
    application = probe.application()
    probe.sent(f"DeliverApplication {short(application.application_id)}, then GetApplicationStatus")
    delivered = await probe.deliver(application, 1)
    probe.got(f"receipt {delivered.receipt_id!r}")
    status = await probe.status(application.application_id)
    probe.got(f"state {_name(status.state)} receipt {status.receipt_id!r}")
    check(status.state in _CASE_STATES, f"state {_name(status.state)} is not a case's state")
    check(status.receipt_id == delivered.receipt_id, "the status does not carry the case's receipt")
    check(status.HasField("update_time"), "the status has no update_time")


async def status_unknown(probe: Probe) -> None:
    application_id = probe.application().application_id
    probe.sent(f"GetApplicationStatus {short(application_id)} (never delivered)")
    error = await probe.refused(probe.status(application_id), "an unknown id was answered")
    shape = error_shape(error)
    check(shape.code is grpc.StatusCode.NOT_FOUND, f"{shape.code.name}, not NOT_FOUND")
    check(
        [i.reason for i in shape.infos] == ["APPLICATION_NOT_FOUND"],
        "not exactly one ErrorInfo with reason APPLICATION_NOT_FOUND",
    )


# -- withdrawal and fetching (bundles) ------------------------------------------------------

_DECIDED = frozenset(
    {
        application_pb2.APPLICATION_STATE_ACCEPTED,
        application_pb2.APPLICATION_STATE_REJECTED,
        application_pb2.APPLICATION_STATE_COMPLETED,
    }
)
UNISSUED_TYPE = "11100000000099999Z999"
"""A well-formed licence type code that no province issues: fetching it is NOT_FOUND."""


async def withdraw(probe: Probe) -> None:
    application = probe.application()
    application_id = application.application_id
    probe.sent(f"DeliverApplication {short(application_id)}, then WithdrawApplication twice")
    await probe.deliver(application)
    request = region_pb2.WithdrawApplicationRequest(
        application_id=application_id, reason="conformance"
    )
    timeout = probe.options.call_timeout
    try:
        await probe.region.WithdrawApplication(request, timeout=timeout)
    except grpc.aio.AioRpcError as error:  # a province that decides on receipt may refuse
        probe.got(describe(error))
        shape = error_shape(error)
        check(
            shape.code is grpc.StatusCode.FAILED_PRECONDITION
            and [i.reason for i in shape.infos] == ["ALREADY_DECIDED"],
            "a refused withdrawal is not FAILED_PRECONDITION ALREADY_DECIDED",
        )
        status = await probe.status(application_id)
        probe.got(f"state {_name(status.state)}")
        check(status.state in _DECIDED, "refused as decided, but the case is not decided")
        return
    status = await probe.status(application_id)
    probe.got(f"withdrawn; state {_name(status.state)}")
    check(
        status.state == application_pb2.APPLICATION_STATE_WITHDRAWN,
        f"answered OK but the case is {_name(status.state)}, not WITHDRAWN",
    )
    await probe.region.WithdrawApplication(request, timeout=timeout)
    probe.got("withdrawing again: OK")
    unknown = region_pb2.WithdrawApplicationRequest(application_id=str(uuid.uuid4()))
    refusal = await probe.refused(
        probe.region.WithdrawApplication(unknown, timeout=timeout),
        "withdrawing an unknown id was answered",
    )
    check(
        [i.reason for i in error_shape(refusal).infos] == ["APPLICATION_NOT_FOUND"],
        "withdrawing an unknown id is not APPLICATION_NOT_FOUND",
    )


async def fetch_refusals(probe: Probe) -> None:
    def fetch(type_code: str) -> region_pb2.FetchLicenseRequest:
        return region_pb2.FetchLicenseRequest(
            license_type_code=type_code,
            holder_id_type=application_pb2.ID_TYPE_CITIZEN_ID,
            holder_id_number=APPLICANT_ID_NUMBER,
            bundle=f"bundles/{uuid.uuid4()}",
            application=f"applications/{uuid.uuid4()}",
        )

    timeout = probe.options.call_timeout
    probe.sent("FetchLicense without a licence type, then of a type nobody issues")
    error = await probe.refused(
        probe.region.FetchLicense(fetch(""), timeout=timeout),
        "a fetch without a licence type was answered",
    )
    shape = error_shape(error)
    check(
        shape.code is grpc.StatusCode.INVALID_ARGUMENT, f"{shape.code.name}, not INVALID_ARGUMENT"
    )
    check(
        any(field == "license_type_code" for field, _ in shape.violations),
        "no field violation names license_type_code",
    )
    error = await probe.refused(
        probe.region.FetchLicense(fetch(UNISSUED_TYPE), timeout=timeout),
        "a licence of a type nobody issues was answered",
    )
    shape = error_shape(error)
    check(
        shape.code is grpc.StatusCode.NOT_FOUND
        and [i.reason for i in shape.infos] == ["LICENSE_NOT_FOUND"],
        "a type the province does not issue is not NOT_FOUND LICENSE_NOT_FOUND",
    )


# -- licences --------------------------------------------------------------------------------


async def _jwks(probe: Probe) -> tuple[list[dict[str, object]], int]:
    response = await probe.region.GetLicenseKeys(
        region_pb2.GetLicenseKeysRequest(), timeout=probe.options.call_timeout
    )
    try:
        document = json.loads(response.jwks_json)
    except ValueError:
        raise Nonconformance("jwks_json is not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not (isinstance(keys, list) and keys):
        raise Nonconformance("jwks_json is not a JWKS with a non-empty 'keys' list")
    check(all(isinstance(k, dict) for k in keys), "a member of 'keys' is not a JSON object")
    return keys, response.max_age_seconds


async def license_keys(probe: Probe) -> None:
    probe.sent("GetLicenseKeys")
    keys, max_age = await _jwks(probe)
    problems: list[str] = []
    kids = Counter(str(k.get("kid")) for k in keys)
    seen = []
    for jwk in keys:
        kid = str(jwk.get("kid"))
        seen.append(f"{kid[:12]} {jwk.get('kty')}/{jwk.get('crv')}")
        private = sorted(PRIVATE_MEMBERS & set(jwk))
        if private:
            problems.append(f"key {kid}: private members {', '.join(private)}")
            continue
        try:
            parse_jwk(probe.options.region, jwk)
        except ValueError as error:
            problems.append(f"key {kid}: {error}")
    problems += [f"kid {kid} names {n} keys" for kid, n in kids.items() if n > 1]
    probe.got(f"keys: {', '.join(seen)}; max_age_seconds {max_age}")
    check(not problems, "; ".join(problems))


async def _status_list_token(probe: Probe) -> str:
    response = await probe.region.GetLicenseStatusList(
        region_pb2.GetLicenseStatusListRequest(), timeout=probe.options.call_timeout
    )
    token: str = response.status_list_token
    check(token, "the status list token is empty")
    return token


async def status_list(probe: Probe) -> None:
    probe.sent("GetLicenseStatusList")
    token = await _status_list_token(probe)
    try:
        unverified = read_unverified(token, expected_type=STATUS_LIST_TOKEN_TYPE)
        claims = unverified.payload
        iat, exp = numeric_date(claims, "iat"), numeric_date(claims, "exp")
    except TokenRejected as rejected:
        probe.got(f"a token of {len(token)} characters")
        raise Nonconformance(rejected.detail) from None
    body = claims.get("status_list")
    ttl = claims.get("ttl")
    probe.got(
        f"typ {unverified.header.typ}, alg {unverified.header.alg}, sub {claims.get('sub')!r}, "
        f"expires in {exp - time.time():.0f} s, ttl {ttl!r}"
    )
    now = time.time()
    check(
        claims.get("sub") == status_list_uri(probe.options.region),
        f"sub is not {status_list_uri(probe.options.region)!r}",
    )
    check(iat <= now + CLOCK_LEEWAY, "iat lies in the future")
    check(exp > now, "the list has expired")
    check(
        isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0,
        "ttl is not a positive integer",
    )
    if not isinstance(body, dict):
        raise Nonconformance("status_list is not an object")
    try:
        decoded = decode_status_list(
            body.get("bits"), body.get("lst"), max_bytes=StatusListSettings().max_list_bytes
        )
    except ValueError as error:
        raise Nonconformance(str(error)) from None
    probe.got(f"{len(decoded)} entries of {decoded.bits} bits")


async def status_list_signature(probe: Probe) -> None:
    probe.sent("GetLicenseKeys, GetLicenseStatusList")
    keys, _ = await _jwks(probe)
    token = await _status_list_token(probe)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Nonconformance("the token's header cannot be read") from None
    kid, alg = header.get("kid"), header.get("alg")
    probe.got(f"a token signed {alg} by key {kid!r}; {len(keys)} keys in the JWKS")
    jwk = next((k for k in keys if k.get("kid") == kid), None)
    if jwk is None:
        raise Nonconformance(f"the JWKS has no key {kid!r}")
    public = {name: value for name, value in jwk.items() if name not in PRIVATE_MEMBERS}
    algorithm = KEY_ALGORITHMS.get((str(public.get("kty")), str(public.get("crv"))))
    if algorithm is None:
        raise Nonconformance(f"key {kid!r} is of a type the gateway does not accept")
    check(alg == algorithm, f"the token's alg {alg!r} is not its key's {algorithm}")
    try:
        jwt.PyJWS().decode_complete(token, jwt.PyJWK(public, algorithm), algorithms=[algorithm])
    except jwt.PyJWTError as error:
        raise Nonconformance(f"the signature does not verify: {type(error).__name__}") from None


# -- the gateway's side ------------------------------------------------------------------------


async def reports_to_gateway(probe: Probe) -> None:
    side = probe.session.gateway_side
    assert side is not None  # `needs` saw to it
    timeout = probe.options.report_timeout
    application = probe.application()
    probe.sent(
        f"DeliverApplication {short(application.application_id)}; waited up to {timeout:g} s "
        f"for ReportApplicationStatus at {side.address}"
    )
    await probe.deliver(application, 1)
    report = await side.next_report(application.application_id, timeout)
    if report is None:
        raise Nonconformance(f"no status report arrived within {timeout:g} s")
    probe.got(
        f"{report.state} (event {report.event_id!r}, region {report.region_code!r}) from "
        f"{report.caller}: " + (f"refused, {report.refusal}" if report.refusal else "accepted")
    )
    check(not report.refusal, f"a gateway refuses the report: {report.refusal}")
    status = await probe.status(application.application_id)
    reported = application_pb2.ApplicationState.Value(report.state)
    probe.got(f"then GetApplicationStatus: {_name(status.state)}")
    check(
        lifecycle.province_report_path(reported, status.state) is not None,
        f"the province reported {report.state} but its status is {_name(status.state)}",
    )


def _needs_gateway_side(options: KitOptions) -> str | None:
    if options.gateway_side is None:
        return (
            "not asked for: give --gateway-side PORT and have the province report to it "
            "(and decide a new case by itself)"
        )
    return None


# -- security --------------------------------------------------------------------------------


async def gateway_only(probe: Probe) -> None:
    tls = probe.options.tls  # `needs` saw to it that all three are there
    assert tls is not None
    assert tls.other_cert is not None
    assert tls.other_key is not None
    caller = _uri_of(tls.other_cert)
    application = probe.application()
    probe.sent(f"DeliverApplication {short(application.application_id)} presenting {caller}")
    async with tls_channel(probe.options.target, tls, tls.other_cert, tls.other_key) as channel:
        intruder = region_pb2_grpc.RegionServiceStub(channel)
        error = await probe.refused(
            intruder.DeliverApplication(
                region_pb2.DeliverApplicationRequest(application=application, attempt=1),
                timeout=probe.options.call_timeout,
            ),
            "the province delivered an application for a caller that is not the gateway",
        )
    code = error.code()
    if code is grpc.StatusCode.UNAVAILABLE:
        # Refused at the handshake, if the province answers the gateway's certificate.
        await probe.region.GetLicenseKeys(
            region_pb2.GetLicenseKeysRequest(), timeout=probe.options.call_timeout
        )
        probe.got("the gateway's certificate is answered: refused at the TLS handshake")
        return
    check(
        code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED),
        f"{code.name}, not PERMISSION_DENIED",
    )


def _uri_of(cert: Path) -> str:
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return certificate.subject.rfc4514_string()
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else certificate.subject.rfc4514_string()


def _needs_other_identity(options: KitOptions) -> str | None:
    if options.tls is None:
        return "plaintext: there is no client certificate to tell the gateway from others"
    if options.tls.other_cert is None:
        return (
            "no client certificate of another identity: give --other-cert and --other-key "
            "(a province's certificate from the federation's PKI)"
        )
    return None


# -- helpers -----------------------------------------------------------------------------------


def _name(state: int) -> str:
    """A state's name; the number when the province sent one the enum does not have."""
    known = application_pb2.ApplicationState.values()
    return (
        _STATE(application_pb2.ApplicationState.ValueType(state)) if state in known else str(state)
    )


def _failure(error: BaseException) -> str:
    return describe(error) if isinstance(error, grpc.aio.AioRpcError) else type(error).__name__


CASES: tuple[Case, ...] = (
    Case(
        "delivery.replay",
        "a repeated delivery returns the original receipt with duplicate set",
        delivery_replay,
    ),
    Case(
        "delivery.concurrent-duplicates",
        f"{CONCURRENT_DUPLICATES} deliveries of one application id at once make one case",
        delivery_concurrent_duplicates,
    ),
    Case(
        "delivery.changed-replay",
        "a repeated delivery with other content is refused (ALREADY_EXISTS) and changes nothing",
        delivery_changed_replay,
    ),
    Case(
        "delivery.malformed",
        "a malformed delivery gets INVALID_ARGUMENT with one ErrorInfo and a BadRequest naming "
        "the field",
        delivery_malformed,
    ),
    Case(
        "status.known",
        "GetApplicationStatus of a delivered application gives its state and receipt",
        status_known,
    ),
    Case(
        "status.unknown",
        "GetApplicationStatus of an unknown id is NOT_FOUND (APPLICATION_NOT_FOUND)",
        status_unknown,
    ),
    Case(
        "delivery.deadline",
        "a delivery whose deadline has passed creates no case, then or later",
        delivery_deadline,
        requires=("status.unknown",),
    ),
    Case(
        "withdrawal",
        "an undelivered-yet-undecided case is withdrawn (idempotently), a decided one refused "
        "with ALREADY_DECIDED, an unknown id NOT_FOUND",
        withdraw,
    ),
    Case(
        "licenses.fetch-refusals",
        "FetchLicense refuses a malformed request (INVALID_ARGUMENT naming the field) and a type "
        "it does not issue (NOT_FOUND LICENSE_NOT_FOUND)",
        fetch_refusals,
    ),
    Case(
        "licenses.keys",
        "the JWKS holds unique, public keys of the algorithms the gateway accepts",
        license_keys,
    ),
    Case(
        "licenses.status-list",
        "the status list is a well-formed statuslist+jwt whose list decodes",
        status_list,
    ),
    Case(
        "licenses.status-list-signature",
        "the status list's signature verifies with a key of the JWKS",
        status_list_signature,
    ),
    Case(
        "reports.accepted-by-gateway",
        "the province reports a case's state to the gateway, and a gateway accepts the report",
        reports_to_gateway,
        needs=_needs_gateway_side,
    ),
    Case(
        "security.gateway-only",
        "over mTLS, RegionService refuses a caller that is not the gateway",
        gateway_only,
        needs=_needs_other_identity,
    ),
)
