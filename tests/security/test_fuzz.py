"""Fuzzing every RPC of the gateway over a real server.

Each RPC gets three kinds of input: arbitrary messages built from its descriptor (every field
type, unknown enum values, long and odd strings, nested and repeated fields), near-valid
messages (a valid request with a few fields replaced by arbitrary values), and arbitrary bytes
that may not parse at all. Whatever arrives:

- no call ends INTERNAL or UNKNOWN, and every error of ours carries its ErrorInfo;
- the server still serves afterwards (health SERVING, a valid call still works);
- the store passes `integrity_check()`, and the applications in it are exactly the ones whose
  submission succeeded (no half-written or phantom application).

The world runs in its own thread and event loop; the fuzzer calls it with a blocking channel,
so each example is a real round trip. Examples are bounded (`EXAMPLES` per RPC and kind).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from conftest import World, start_world
from google.protobuf import descriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.api.v1 import (
    application_pb2,
    application_pb2_grpc,
    bundle_pb2,
    catalog_pb2,
    license_pb2,
)
from gateway.security.authz import RPC_ACTIONS
from gateway.security.identity import Role
from gateway.storage.sqlite import SqliteStore

EXAMPLES = 25
ORIGIN, TARGET = "440000", "510000"
CITIZEN = "110105199003071239"
BUNDLE_NAME = f"bundles/{uuid.UUID(int=1)}"
CALL_TIMEOUT = 20.0
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
# Codes raised by gRPC itself (limits, deadlines), which carry no ErrorInfo.
TRANSPORT_CODES = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}

FD = descriptor.FieldDescriptor


# -- The world, in its own thread ----------------------------------------------------------


@dataclass
class Fuzzed:
    """The running world, a blocking channel to it, and what the fuzzer created."""

    world: World
    loop: asyncio.AbstractEventLoop
    channel: grpc.Channel
    templates: dict[str, Message]
    created: set[str] = field(default_factory=set)
    codes: dict[str, set[grpc.StatusCode]] = field(default_factory=dict)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)


def _one_to_one_pair(world: World) -> tuple[str, str]:
    snapshot = world.gateway.registry.snapshot
    latest = snapshot.latest()
    assert latest is not None
    today = datetime.now(UTC).date()
    indexes = snapshot.region_indexes()
    for code, matter in latest.document.matters.items():
        src = [e.local_code for e in indexes[ORIGIN].live_entries(code, today)]
        dst = [e.local_code for e in indexes[TARGET].live_entries(code, today)]
        if (
            matter.cross_region_modes
            and len(src) == 1
            and len(dst) == 1
            and len(indexes[ORIGIN].by_local[src[0]].national_codes) == 1
        ):
            return src[0], code
    raise AssertionError("no 1:1 cross-region pair")


def _templates(world: World, application: application_pb2.Application) -> dict[str, Message]:
    """A valid request for every RPC, for near-valid mutations."""
    local, national = _one_to_one_pair(world)
    latest = world.gateway.registry.snapshot.latest()
    assert latest is not None
    submit = application_pb2.SubmitApplicationRequest(
        request_id="fuzz-template",
        origin_region=ORIGIN,
        target_region=TARGET,
        local_matter_code=local,
        applicant=application_pb2.Applicant(
            id_type=application_pb2.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
        ),
        form_fields=[application_pb2.FormField(key="phone", value="13800000000")],
        materials=[
            application_pb2.Material(
                material_id=m.id, paper=application_pb2.PaperMaterial(description=m.name)
            )
            for m in latest.document.matters[national].materials
            if m.required
        ],
    )
    resolve = catalog_pb2.ResolveLocalCodeRequest(region_code=ORIGIN, local_code=local)
    submit_time = Timestamp(seconds=1_780_000_000)
    return {
        "PublishCatalogVersion": catalog_pb2.PublishCatalogVersionRequest(
            signed_document="eyJhbGciOiJFZERTQSJ9.e30.AAAA", validate_only=True
        ),
        "GetCatalogVersion": catalog_pb2.GetCatalogVersionRequest(name="catalogVersions/2025.1"),
        "ListCatalogVersions": catalog_pb2.ListCatalogVersionsRequest(page_size=1),
        "GetMatter": catalog_pb2.GetMatterRequest(
            name=f"catalogVersions/2025.1/matters/{national}"
        ),
        "ListMatters": catalog_pb2.ListMattersRequest(parent="catalogVersions/2025.1", page_size=2),
        "GetTheme": catalog_pb2.GetThemeRequest(name="catalogVersions/2025.1/themes/YJS0001"),
        "ListThemes": catalog_pb2.ListThemesRequest(parent="catalogVersions/2025.1", page_size=2),
        "DiffCatalogVersions": catalog_pb2.DiffCatalogVersionsRequest(
            from_version="2025.1", to_version="2025.2"
        ),
        "PublishRegionCatalog": catalog_pb2.PublishRegionCatalogRequest(
            # A province outside the fuzzed pair: a list that replaces ORIGIN's would turn later
            # submissions into NOT_FOUND, a legitimate outcome that hides the rest.
            region_catalog=catalog_pb2.RegionCatalog(name="regions/330000/catalog"),
            validate_only=True,
        ),
        "ResolveLocalCode": resolve,
        "BatchResolveLocalCodes": catalog_pb2.BatchResolveLocalCodesRequest(
            requests=[resolve, resolve]
        ),
        "TranslateLocalCode": catalog_pb2.TranslateLocalCodeRequest(
            from_region_code=ORIGIN, to_region_code=TARGET, local_code=local
        ),
        "SubmitApplication": submit,
        "GetApplication": application_pb2.GetApplicationRequest(name=application.name),
        "ListApplications": application_pb2.ListApplicationsRequest(
            region_code=ORIGIN, page_size=2
        ),
        "WatchApplication": application_pb2.WatchApplicationRequest(name=application.name),
        "ReportApplicationStatus": application_pb2.ReportApplicationStatusRequest(
            name=application.name,
            region_code=TARGET,
            state=application_pb2.APPLICATION_STATE_ACCEPTED,
            event_id="fuzz-event",
        ),
        "VerifyLicense": license_pb2.VerifyLicenseRequest(token="a.b.c"),
        # The catalog in force here has no themes: a bundle is judged up to THEME_NOT_FOUND
        # (tests/applications/test_bundles.py runs them on 2026.1).
        "SubmitBundle": bundle_pb2.SubmitBundleRequest(
            request_id="fuzz-bundle",
            origin_region=ORIGIN,
            theme_code="YJS0001",
            roles=[
                bundle_pb2.RoleBinding(role="transfer_out", region_code=ORIGIN),
                bundle_pb2.RoleBinding(role="transfer_in", region_code=TARGET),
            ],
            applicant=submit.applicant,
            form_fields=[application_pb2.FormField(key="id_number", value=CITIZEN)],
            consent=bundle_pb2.Consent(
                flows=[bundle_pb2.FlowConsent(member_id="in", material_id="M03")],
                consent_time=submit_time,
                channel="app",
            ),
        ),
        "GetBundle": bundle_pb2.GetBundleRequest(name=BUNDLE_NAME),
        "WatchBundle": bundle_pb2.WatchBundleRequest(name=BUNDLE_NAME),
        "WithdrawBundle": bundle_pb2.WithdrawBundleRequest(name=BUNDLE_NAME, reason="fuzz"),
        "RateBundle": bundle_pb2.RateBundleRequest(
            name=BUNDLE_NAME, rating=bundle_pb2.Rating(score=5, region_code=TARGET)
        ),
    }


@pytest.fixture(scope="module", params=["insecure", "mtls"])
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzed]:
    """The world in plaintext (every handler reachable) and over mTLS, calling as ORIGIN (the
    policy's refusals under hostile input)."""
    tls = request.param == "mtls"
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    ready: Future[tuple[World, asyncio.AbstractEventLoop, asyncio.Event, Message]] = Future()

    async def main() -> None:
        stop = asyncio.Event()
        try:
            async with start_world(data_dir, (ORIGIN, TARGET), tls=tls) as world:
                applications = (
                    application_pb2_grpc.ApplicationServiceStub(
                        await world.channel_as(Role.REGION, ORIGIN)
                    )
                    if tls
                    else world.applications
                )
                first = await applications.SubmitApplication(
                    _templates(world, application_pb2.Application(name="applications/x"))[
                        "SubmitApplication"
                    ]
                )
                ready.set_result((world, asyncio.get_running_loop(), stop, first.application))
                await stop.wait()
        except BaseException as error:
            if not ready.done():
                ready.set_exception(error)
            raise

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="fuzz-world")
    thread.start()
    world, loop, stop, first = ready.result(120)
    assert isinstance(first, application_pb2.Application)
    if world.pki is None:
        channel = grpc.insecure_channel(world.gateway.address)
    else:
        pair = world.pki.regions[ORIGIN]
        channel = grpc.secure_channel(
            world.gateway.address,
            grpc.ssl_channel_credentials(
                world.pki.ca_cert.read_bytes(), pair.key.read_bytes(), pair.cert.read_bytes()
            ),
        )
    fuzz = Fuzzed(world, loop, channel, _templates(world, first), created={first.application_id})
    try:
        yield fuzz
    finally:
        channel.close()
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)


# -- Strategies from descriptors -----------------------------------------------------------

NEAR_VALID_TEXT = [
    ORIGIN,
    TARGET,
    "000000",
    "990000",
    "440100",
    "11440000MBFYX5N41F2002035011000",
    "002035011000",
    "catalogVersions/2025.1",
    "catalogVersions/2025.2",
    "catalogVersions/9999.9",
    "catalogVersions/2025.1/matters/002035011000",
    "regions/330000/catalog",
    "regions/31/catalog",
    f"applications/{uuid.UUID(int=0)}",
    "applications/",
    "applications/../../etc",
    BUNDLE_NAME,
    "bundles/",
    "YJS0001",
    "transfer_out",
    CITIZEN,
    "11010519900307123X",
    "M01",
    "2025.1",
    "eyJ.eyJ.sig",
    "",
    " ",
    "\x00",
    "\u202e",
    "🙂",
    "%s%s%n",
    "' OR 1=1 --",
]
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(NEAR_VALID_TEXT),
    st.text(min_size=200, max_size=3000),
)
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FD.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: st.integers(-(2**31), 2**31 - 1),
    FD.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: st.integers(-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FD.TYPE_FIXED32: st.integers(0, 2**32 - 1),
    FD.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FD.TYPE_FIXED64: st.integers(0, 2**64 - 1),
    FD.TYPE_BOOL: st.booleans(),
    FD.TYPE_DOUBLE: st.floats(),
    FD.TYPE_FLOAT: st.floats(width=32),
    FD.TYPE_STRING: TEXT,
    FD.TYPE_BYTES: st.binary(max_size=64),
}


def _value(f: descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if f.type == FD.TYPE_MESSAGE:
        assert f.message_type is not None
        return messages(f.message_type, depth + 1)
    if f.type == FD.TYPE_ENUM:
        assert f.enum_type is not None
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    return _SCALARS[f.type]


def _assign(msg: Message, name: str, value: Any) -> None:
    f = msg.DESCRIPTOR.fields_by_name[name]
    repeated = f.is_repeated
    if f.type == FD.TYPE_MESSAGE:
        if repeated:
            for item in value:
                getattr(msg, name).add().CopyFrom(item)
        else:
            getattr(msg, name).CopyFrom(value)
    elif repeated:
        getattr(msg, name).extend(value)
    else:
        setattr(msg, name, value)


def messages(desc: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Arbitrary messages of `desc`: any subset of fields, any values, nested to depth 3."""
    cls: type[Message] = _message_class(desc)
    if depth > 3:
        return st.just(cls())
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in desc.fields:
        value = _value(f, depth)
        optional[f.name] = st.lists(value, max_size=4 if depth else 6) if f.is_repeated else value

    def build(values: dict[str, Any]) -> Message:
        msg = cls()
        for name, value in values.items():
            _assign(msg, name, value)
        return msg

    return st.fixed_dictionaries({}, optional=optional).map(build)


def _message_class(desc: descriptor.Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(desc)


def near_valid(template: Message) -> st.SearchStrategy[Message]:
    """The valid `template` with up to three of its fields replaced by arbitrary values."""
    desc = cast(descriptor.Descriptor, template.DESCRIPTOR)
    names = [f.name for f in desc.fields]

    @st.composite
    def mutate(draw: st.DrawFn) -> Message:
        msg = type(template)()
        msg.CopyFrom(template)
        for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
            msg.ClearField(name)
            f = desc.fields_by_name[name]
            value = _value(f, 1)
            if f.is_repeated:
                value = st.lists(value, max_size=4)
            _assign(msg, name, draw(value))
        if isinstance(msg, application_pb2.SubmitApplicationRequest) and draw(st.booleans()):
            # Mostly fresh idempotency keys: new submissions, not only replays.
            msg.request_id = f"fuzz-{draw(st.integers(0, 10**9))}"
        return msg

    return mutate()


# -- Calling -------------------------------------------------------------------------------

SERVICES = {
    "CatalogService": catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"],
    "ApplicationService": application_pb2.DESCRIPTOR.services_by_name["ApplicationService"],
    "LicenseService": license_pb2.DESCRIPTOR.services_by_name["LicenseService"],
    "BundleService": bundle_pb2.DESCRIPTOR.services_by_name["BundleService"],
}
METHODS = {m.name: (s, m) for s in SERVICES.values() for m in s.methods}


def _path(name: str) -> str:
    service, _ = METHODS[name]
    return f"/{service.full_name}/{name}"


def call(fuzz: Fuzzed, name: str, payload: bytes) -> tuple[grpc.StatusCode, bytes | None]:
    """Sends raw request bytes; returns the status code and the first response's bytes."""
    _, method = METHODS[name]
    path = _path(name)
    identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    try:
        if method.server_streaming:
            stream = fuzz.channel.unary_stream(
                path, request_serializer=identity, response_deserializer=identity
            )(payload, timeout=2.0)
            try:
                first = next(iter(stream))
            finally:
                stream.cancel()
            return grpc.StatusCode.OK, first
        unary = fuzz.channel.unary_unary(
            path, request_serializer=identity, response_deserializer=identity
        )
        return grpc.StatusCode.OK, unary(payload, timeout=CALL_TIMEOUT)
    except grpc.RpcError as error:
        assert isinstance(error, grpc.Call)  # noqa: PT017
        code = error.code()
        if code is grpc.StatusCode.CANCELLED and method.server_streaming:
            return grpc.StatusCode.OK, None  # our own cancel after the first message
        check_error(name, error, code)
        return code, None


def check_error(name: str, error: grpc.Call, code: grpc.StatusCode) -> None:
    assert code not in FORBIDDEN, f"{name}: {code.name}: {error.details()}"
    if code in TRANSPORT_CODES or (
        code is grpc.StatusCode.DEADLINE_EXCEEDED and METHODS[name][1].server_streaming
    ):
        return
    status = rpc_status.from_call(error)
    assert status is not None, f"{name}: {code.name} without a google.rpc.Status"
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1, f"{name}: {code.name} with {len(infos)} ErrorInfo"


def send(fuzz: Fuzzed, name: str, request: Message) -> None:
    template = fuzz.templates[name]
    if (
        isinstance(request, application_pb2.SubmitApplicationRequest)
        and isinstance(template, application_pb2.SubmitApplicationRequest)
        and request.request_id == template.request_id
    ):
        # A mutation that leaves the key alone would only replay the first application; a
        # fresh key makes every valid one a new application, so the success path is reached
        # on every run, not by chance.
        request.request_id = str(uuid.uuid4())
    code, body = call(fuzz, name, request.SerializeToString())

    fuzz.codes.setdefault(name, set()).add(code)
    if name == "SubmitApplication" and code is grpc.StatusCode.OK and body is not None:
        response = application_pb2.SubmitApplicationResponse.FromString(body)
        fuzz.created.add(response.application.application_id)


def _request_descriptor(name: str) -> descriptor.Descriptor:
    return METHODS[name][1].input_type


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_arbitrary_messages(fuzzed: Fuzzed, name: str) -> None:
    @FUZZ_SETTINGS
    @given(request=messages(_request_descriptor(name)))
    def run(request: Message) -> None:
        send(fuzzed, name, request)

    run()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_near_valid_messages(fuzzed: Fuzzed, name: str) -> None:
    @FUZZ_SETTINGS
    @given(request=near_valid(fuzzed.templates[name]))
    def run(request: Message) -> None:
        send(fuzzed, name, request)

    before = len(fuzzed.created)
    run()
    if name == "SubmitApplication":
        # Near-valid submissions get through to the handler, not only to validation.
        assert grpc.StatusCode.OK in fuzzed.codes[name]
        assert len(fuzzed.created) > before


@pytest.mark.parametrize("name", sorted(METHODS))
def test_arbitrary_bytes(fuzzed: Fuzzed, name: str) -> None:
    @FUZZ_SETTINGS
    @given(payload=st.binary(max_size=512))
    def run(payload: bytes) -> None:
        code, _ = call(fuzzed, name, payload)
        fuzzed.codes.setdefault(name, set()).add(code)

    run()


def _fill_strings(msg: Message, value: str) -> None:
    for f in msg.DESCRIPTOR.fields:
        if f.type == FD.TYPE_STRING and not f.is_repeated:
            setattr(msg, f.name, value)
        elif f.type == FD.TYPE_MESSAGE and not f.is_repeated and msg.HasField(f.name):
            _fill_strings(getattr(msg, f.name), value)
        elif f.type == FD.TYPE_MESSAGE and f.is_repeated:
            for item in getattr(msg, f.name):
                _fill_strings(item, value)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_huge_fields_get_a_rich_answer(fuzzed: Fuzzed, name: str) -> None:
    """Every string 500 kB long: the answer still fits the client's metadata limit (a status
    that echoed the input would be dropped by the client as RESOURCE_EXHAUSTED)."""
    request = type(fuzzed.templates[name])()
    request.CopyFrom(fuzzed.templates[name])
    _fill_strings(request, "9" * 500_000)  # every request stays under the 16 MiB limit
    code, _ = call(fuzzed, name, request.SerializeToString())
    assert code is not grpc.StatusCode.RESOURCE_EXHAUSTED, len(request.SerializeToString())


def test_every_rpc_is_fuzzed(fuzzed: Fuzzed) -> None:
    """Every RPC of the proto has a near-valid template and an authorization rule."""
    assert set(fuzzed.templates) == set(METHODS)
    assert {_path(name) for name in METHODS} == set(RPC_ACTIONS)


def test_the_world_survived(fuzzed: Fuzzed) -> None:
    """Whenever it runs: the server serves and the store holds exactly what was answered OK."""
    health = health_pb2_grpc.HealthStub(fuzzed.channel).Check(
        health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    code, _ = call(
        fuzzed, "GetCatalogVersion", fuzzed.templates["GetCatalogVersion"].SerializeToString()
    )
    assert code is grpc.StatusCode.OK
    store = fuzzed.world.gateway.store
    assert isinstance(store, SqliteStore)  # the world's default store
    assert fuzzed.run(store.integrity_check()) == []
    stored = fuzzed.run(
        store._engine.read(
            lambda conn: {row[0] for row in conn.execute("SELECT application_id FROM applications")}
        )
    )
    assert stored == fuzzed.created
