"""Tests for tongban_client against a real gateway with real region stubs.

The platform is 广东 (440000) calling over mutual TLS with its own certificate from the dev PKI,
as a provincial platform would; the catalog's reads also run over an insecure channel, against
a gateway started in insecure mode, as a local trial would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import STANDARDS, STANDARDS_BODY, World, eventually, start_world
from traffic import CITIZEN, NAME, ORIGIN, TARGET, matter_pair

from gateway.api.v1 import application_pb2 as gateway_pb
from gateway.applications import lifecycle
from gateway.catalog import signing
from gateway.storage.group_commit import RETRY_DELAY
from gateway.storage.sqlite import SqliteStore
from region_stubs.admin.v1 import admin_pb2
from tongban_client import (
    TERMINAL_STATES,
    ClientConfig,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RetryPolicy,
    TongbanClient,
    Unavailable,
)
from tongban_client.api.v1 import application_pb2 as pb
from tongban_client.api.v1 import catalog_pb2, license_pb2

ID_CARD = "11100000000013127D001"
"""居民身份证's licence type code, which the local federation trusts 440000 to issue."""


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with start_world(tmp_path, (ORIGIN, TARGET), tls=True) as w:
        yield w


def platform(world: World, region: str = ORIGIN, **overrides: Any) -> TongbanClient:
    """The client of `region`'s platform, with its certificate."""
    assert world.pki is not None
    return TongbanClient(
        ClientConfig.mutual_tls(
            world.gateway.address,
            ca=world.pki.ca_cert,
            cert=world.pki.regions[region].cert,
            key=world.pki.regions[region].key,
            **overrides,
        )
    )


def application_request(world: World, **overrides: Any) -> pb.SubmitApplicationRequest:
    """A complete, valid submission without a request id: every required material as paper."""
    local, national = matter_pair(world)
    latest = world.gateway.registry.snapshot.latest()
    assert latest is not None
    values: dict[str, Any] = {
        "origin_region": ORIGIN,
        "target_region": TARGET,
        "local_matter_code": local,
        "applicant": pb.Applicant(
            id_type=pb.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name=NAME
        ),
        "materials": [
            pb.Material(material_id=m.id, paper=pb.PaperMaterial(description=m.name))
            for m in latest.document.matters[national].materials
            if m.required
        ],
    }
    values.update(overrides)
    return pb.SubmitApplicationRequest(**values)


async def decide(
    world: World, application: pb.Application, state: gateway_pb.ApplicationState.ValueType
) -> None:
    """The target province decides the case and reports it to the gateway."""
    await world.stubs[TARGET].admin.DecideCase(
        admin_pb2.DecideCaseRequest(application_id=application.application_id, state=state)
    )


# -- Applications ------------------------------------------------------------------------------


async def test_a_submission_gets_a_new_uuid4_request_id_and_is_delivered(world: World) -> None:
    request = application_request(world)
    async with platform(world) as client:
        first = await client.applications.submit(request)
        second = await client.applications.submit(request)
        stored = await client.applications.get(first.application.name)
    assert request.request_id == "", "the caller's message is not changed"
    ids = [first.application.request_id, second.application.request_id]
    assert all(uuid.UUID(i).version == 4 for i in ids)
    assert ids[0] != ids[1], "each submission is a new one"
    assert first.application.state == pb.APPLICATION_STATE_DELIVERED
    assert not first.replayed
    assert stored.receipt_id == first.application.receipt_id != ""
    assert (await world.stubs[TARGET].counters()).cases_created == 2


async def test_a_given_request_id_is_kept_and_a_repeat_is_replayed(world: World) -> None:
    request = application_request(world, request_id="platform-0001")
    async with platform(world) as client:
        first = await client.applications.submit(request)
        again = await client.applications.submit(request)
    assert first.application.request_id == again.application.request_id == "platform-0001"
    assert again.replayed
    assert again.application.application_id == first.application.application_id
    assert (await world.stubs[TARGET].counters()).cases_created == 1


def store_fails_once_after_delivery(world: World) -> list[str]:
    """The store's write of the first delivery's outcome fails as SQLite fails (disk I/O
    error): the province has the case, the caller gets UNAVAILABLE with RetryInfo."""
    store = world.gateway.store
    assert isinstance(store, SqliteStore)
    real = store.replace_if_unchanged
    failed: list[str] = []

    def boom(conn: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    async def replace_if_unchanged(application_id: str, **changes: Any) -> bool:
        if not failed:
            failed.append(application_id)
            await store._engine.write(boom)
        return await real(application_id, **changes)

    store.replace_if_unchanged = replace_if_unchanged  # type: ignore[method-assign]
    return failed


async def test_unavailable_is_retried_after_the_gateways_delay_with_the_same_request_id(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    failed = store_fails_once_after_delivery(world)
    caplog.set_level(logging.WARNING, logger="tongban_client")
    async with platform(world) as client:
        response = await client.applications.submit(application_request(world))
        assert failed, "the first attempt failed"
        # A new request id would have made a second application; the same one finds the first.
        assert response.replayed
        assert response.application.application_id == failed[0]
        name = response.application.name
        await eventually(
            lambda: _state_is(client, name, pb.APPLICATION_STATE_DELIVERED),
            within=10,
            what="the stored application to be DELIVERED",
        )
    retries = [r.getMessage() for r in caplog.records if r.name == "tongban_client"]
    assert retries == [
        f"SubmitApplication: UNAVAILABLE (STORE_UNAVAILABLE); attempt 2 of 5 in {RETRY_DELAY:.3f} s"
    ]
    counters = await world.stubs[TARGET].counters()
    assert counters.cases_created == 1


async def _state_is(client: TongbanClient, name: str, state: int) -> bool:
    return (await client.applications.get(name)).state == state


async def test_wait_follows_the_watch_to_the_terminal_state(world: World) -> None:
    async with platform(world) as client:
        submitted = await client.applications.submit(application_request(world))
        application = submitted.application
        seen: list[int] = []

        async def watch() -> None:
            async for changed in client.applications.watch(application.name):
                seen.append(changed.state)

        watching = asyncio.create_task(watch())
        waiting = asyncio.create_task(client.applications.wait(application.name, timeout=20))
        await eventually(lambda: len(seen) == 1, within=5, what="the watch's first state")
        await decide(world, application, gateway_pb.APPLICATION_STATE_ACCEPTED)
        await decide(world, application, gateway_pb.APPLICATION_STATE_COMPLETED)
        final = await waiting
        await asyncio.wait_for(watching, 5)
    assert final.state == pb.APPLICATION_STATE_COMPLETED
    assert final.state in TERMINAL_STATES
    assert seen == [
        pb.APPLICATION_STATE_DELIVERED,
        pb.APPLICATION_STATE_ACCEPTED,
        pb.APPLICATION_STATE_COMPLETED,
    ]


class Relay:
    """A TCP relay in front of the gateway whose connections can be cut, as a network or a
    load balancer cuts them (TLS passes through it end to end)."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.address = ""

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        self._server.close()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        """Closes every connection open now."""
        for writer in self._writers:
            writer.close()
        self._writers.clear()


def watches_started(world: World) -> float:
    found = world.gateway.metrics.registry.get_sample_value(
        "grpc_server_started_total",
        {
            "grpc_type": "server_stream",
            "grpc_service": "gateway.api.v1.ApplicationService",
            "grpc_method": "WatchApplication",
        },
    )
    return found or 0.0


async def test_wait_opens_a_cut_watch_again_and_misses_nothing(world: World) -> None:
    async with platform(world) as direct:
        submitted = await direct.applications.submit(application_request(world))
    application = submitted.application
    async with Relay(world.gateway.address) as relay:
        assert world.pki is not None
        config = ClientConfig.mutual_tls(
            relay.address,
            ca=world.pki.ca_cert,
            cert=world.pki.regions[ORIGIN].cert,
            key=world.pki.regions[ORIGIN].key,
            retry=RetryPolicy(initial_backoff=0.05, max_backoff=0.2),
        )
        async with TongbanClient(config) as client:
            waiting = asyncio.create_task(client.applications.wait(application.name, timeout=20))
            await eventually(lambda: watches_started(world) == 1, within=5, what="a watch")
            relay.cut()
            # Decided after the cut: the reopened watch starts with the state as it is then.
            await decide(world, application, gateway_pb.APPLICATION_STATE_ACCEPTED)
            await decide(world, application, gateway_pb.APPLICATION_STATE_COMPLETED)
            final = await waiting
    assert final.state == pb.APPLICATION_STATE_COMPLETED
    assert relay.connections >= 2
    assert watches_started(world) >= 2


def test_the_terminal_states_are_the_gateways() -> None:
    assert {int(s) for s in TERMINAL_STATES} == {int(s) for s in lifecycle.TERMINAL}


async def test_wait_gives_up_at_its_timeout(world: World) -> None:
    async with platform(world) as client:
        submitted = await client.applications.submit(application_request(world))
        with pytest.raises(DeadlineExceeded):
            await client.applications.wait(submitted.application.name, timeout=0.3)


async def test_the_handling_province_reports_and_lists(world: World) -> None:
    async with platform(world) as origin, platform(world, TARGET) as target:
        submitted = await origin.applications.submit(application_request(world))
        name = submitted.application.name
        reported = await target.applications.report_status(
            name, region_code=TARGET, state=pb.APPLICATION_STATE_REJECTED, event_id="e-1"
        )
        again = await target.applications.report_status(
            name, region_code=TARGET, state=pb.APPLICATION_STATE_REJECTED, event_id="e-1"
        )
        handled = [a.name async for a in target.applications.list(TARGET, page_size=1)]
        final = await origin.applications.wait(name, timeout=10)
    assert reported.state == again.state == final.state == pb.APPLICATION_STATE_REJECTED
    assert handled == [name]


# -- Errors ------------------------------------------------------------------------------------


async def test_an_invalid_request_raises_invalid_argument_with_every_field_violation(
    world: World,
) -> None:
    request = application_request(
        world, applicant=pb.Applicant(id_type=pb.ID_TYPE_CITIZEN_ID, id_number="12345")
    )
    async with platform(world) as client:
        with pytest.raises(InvalidArgument) as caught:
            await client.applications.submit(request)
    error = caught.value
    assert (error.code, error.reason, error.domain) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        "tongban.gov.cn",
    )
    fields = {v.field for v in error.field_violations}
    assert {"applicant.id_number", "applicant.display_name"} <= fields
    assert all(v.description for v in error.field_violations)
    assert error.request_id is not None
    assert uuid.UUID(error.request_id).version == 4, "the id sent, to submit again with"


async def test_another_provinces_origin_is_permission_denied_with_the_denial(
    world: World,
) -> None:
    async with platform(world, TARGET) as client:
        with pytest.raises(PermissionDenied) as caught:
            await client.applications.submit(application_request(world))
    assert caught.value.reason == "PERMISSION_DENIED"
    assert caught.value.metadata["denial"]


async def test_unknown_things_are_not_found_with_their_reason(world: World) -> None:
    async with platform(world) as client:
        with pytest.raises(NotFound) as matter:
            await client.catalog.get_matter("000147021000")
        with pytest.raises(NotFound) as local:
            await client.catalog.resolve(ORIGIN, "NO-SUCH-CODE")
    assert matter.value.reason == "MATTER_NOT_FOUND"
    assert local.value.reason == "LOCAL_CODE_NOT_FOUND"


async def test_an_ambiguous_local_code_names_its_candidates(world: World) -> None:
    index = world.gateway.registry.snapshot.region_indexes()[ORIGIN]
    merged = next(code for code, entry in index.by_local.items() if len(entry.national_codes) > 1)
    async with platform(world) as client:
        with pytest.raises(FailedPrecondition) as caught:
            await client.catalog.resolve(ORIGIN, merged)
        candidates = caught.value.metadata["candidates"].split(",")
        named = await client.catalog.resolve(ORIGIN, merged, national_code=candidates[1])
    assert caught.value.reason == "LOCAL_CODE_AMBIGUOUS"
    assert named.matter.code == candidates[1]


async def test_a_gateway_that_never_answers_is_unavailable_after_the_policys_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as held:  # a port nobody listens on, for the test's duration
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        caplog.set_level(logging.WARNING, logger="tongban_client")
        policy = RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.1)
        config = ClientConfig.insecure(f"127.0.0.1:{port}", timeout=2, retry=policy)
        async with TongbanClient(config) as client:
            with pytest.raises(Unavailable) as caught:
                await client.catalog.get_matter("002035011000")
    assert caught.value.reason == ""
    retries = [r.getMessage() for r in caplog.records if r.name == "tongban_client"]
    assert [m.split(";")[1].split(" in ")[0] for m in retries] == [
        " attempt 2 of 3",
        " attempt 3 of 3",
    ]


# -- Licences ----------------------------------------------------------------------------------


async def test_a_licence_is_verified_and_anothers_is_a_verdict_not_an_error(
    world: World,
) -> None:
    issued = await world.stubs[ORIGIN].admin.IssueLicense(
        admin_pb2.IssueLicenseRequest(
            license_type_code=ID_CARD,
            license_number="440305199003071239",
            holder_id_type=gateway_pb.ID_TYPE_CITIZEN_ID,
            holder_id_number=CITIZEN,
        )
    )
    async with platform(world) as client:
        valid = await client.licenses.verify(
            issued.token, expected_type_code=ID_CARD, expected_holder_id_number=CITIZEN
        )
        other = await client.licenses.verify(
            issued.token, expected_holder_id_number="11010519491231002X"
        )
        with pytest.raises(InvalidArgument) as empty:
            await client.licenses.verify("")
    assert valid.verdict == license_pb2.LICENSE_VERDICT_VALID
    assert valid.license.issuer_region == ORIGIN
    assert valid.license.holder_id_masked == "110105********1239"
    assert other.verdict == license_pb2.LICENSE_VERDICT_HOLDER_MISMATCH
    assert [v.field for v in empty.value.field_violations] == ["token"]


# -- The catalog, over an insecure channel -----------------------------------------------------


@pytest.fixture
async def open_world(tmp_path: Path) -> AsyncIterator[World]:
    """An insecure gateway serving catalog 2026.1 (published after 2025.2), with its themes."""
    key = signing.generate_private_key()
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "body.pub.pem").write_bytes(signing.public_pem(key))
    async with start_world(
        tmp_path, regions=(), standards_keys={STANDARDS_BODY: keys / "body.pub.pem"}
    ) as w:
        for version in ("2025.2", "2026.1"):
            document = (STANDARDS / "catalog" / f"{version}.json").read_bytes()
            await w.catalog.PublishCatalogVersion(
                catalog_pb2.PublishCatalogVersionRequest(
                    signed_document=signing.sign_catalog(document, key, STANDARDS_BODY)
                )
            )
        yield w


async def test_matters_and_themes_are_read_page_by_page(open_world: World) -> None:
    catalog = json.loads((STANDARDS / "catalog" / "2026.1.json").read_text(encoding="utf-8"))
    async with TongbanClient(ClientConfig.insecure(open_world.gateway.address)) as client:
        matters = [m.code async for m in client.catalog.list_matters(page_size=7)]
        online = [
            m.code
            async for m in client.catalog.list_matters(
                cross_region_mode=catalog_pb2.CROSS_REGION_MODE_FULLY_ONLINE
            )
        ]
        older = [m.code async for m in client.catalog.list_matters(version="2025.2")]
        themes = [t.code async for t in client.catalog.list_themes(page_size=3)]
        matter = await client.catalog.get_matter(matters[0])
        theme = await client.catalog.get_theme(themes[-1])
    assert matters == [m["code"] for m in catalog["matters"]]
    assert 0 < len(online) < len(matters)
    assert set(online) <= set(matters)
    assert older
    assert older != matters
    assert themes == [t["code"] for t in catalog["themes"]]
    assert matter.name == f"catalogVersions/2026.1/matters/{matters[0]}"
    assert theme.name == f"catalogVersions/2026.1/themes/{themes[-1]}"
    assert theme.members


async def test_a_local_code_resolves_to_its_national_matter(world: World) -> None:
    local, national = matter_pair(world)
    async with platform(world) as client:
        resolved = await client.catalog.resolve(ORIGIN, local)
    assert (resolved.region_code, resolved.local_code) == (ORIGIN, local)
    assert resolved.matter.code == national
