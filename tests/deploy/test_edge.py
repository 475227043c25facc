"""The edge proxy for real: Envoy (the pinned binary) in front of a real gateway over mTLS, with
real region stubs, called over HTTPS with provinces' client certificates.

What it proves: an HTTP/JSON submission is delivered like any other and its `request_id` is
the same key over gRPC (replayed, delivered once); errors are HTTP statuses with the
`google.rpc.Status` body; the responses match the published OpenAPI description; a province
cannot pass as another through the edge (Envoy replaces a header a client sends) nor by calling
the gateway directly with the header (refused); gRPC clients may use the edge too.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import pytest
from conftest import World, rich_error, start_world
from google.protobuf import json_format
from jsonschema import Draft202012Validator

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import application_pb2_grpc
from gateway.security.forwarded import HEADER
from gateway.security.tls import channel_credentials
from gateway.tools.edge import RunningEdge, running_edge
from gateway.tools.local import edge_settings
from region_stubs.admin.v1 import admin_pb2

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = json.loads((ROOT / "deploy" / "envoy" / "openapi.json").read_text(encoding="utf-8"))
ORIGIN, TARGET = "440000", "510000"
REGIONS = (ORIGIN, TARGET, "520000", "330000")
CITIZEN = "110105199003071239"


@dataclass
class Edge:
    world: World
    edge: RunningEdge

    def https(self, code: str) -> ssl.SSLContext:
        """A client context presenting province `code`'s certificate."""
        assert self.world.pki is not None
        pair = self.world.pki.regions[code]
        context = ssl.create_default_context(cafile=str(self.world.pki.ca_cert))
        context.load_cert_chain(str(pair.cert), str(pair.key))
        return context

    async def call(
        self,
        code: str,
        method: str,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(HTTP status, body) of one request as province `code`: the body decoded when it
        is JSON (the gateway's answers), else its text (the edge's own refusals)."""

        def send() -> tuple[int, Any]:
            connection = http.client.HTTPSConnection(
                "localhost", self.edge.port, context=self.https(code), timeout=30
            )
            try:
                payload = None if body is None else json.dumps(body, ensure_ascii=False)
                connection.request(
                    method,
                    path,
                    body=None if payload is None else payload.encode(),
                    headers={"content-type": "application/json", **(headers or {})},
                )
                response = connection.getresponse()
                text = response.read().decode()
                if response.getheader("content-type", "").startswith("application/json"):
                    return response.status, json.loads(text)
                return response.status, text
            finally:
                connection.close()

        return await asyncio.to_thread(send)


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async with start_world(tmp_path, REGIONS, tls=True) as world:
        assert world.pki is not None
        settings = edge_settings(world.pki, [world.gateway.address], 0)
        async with running_edge(settings, tmp_path / "edge") as running:
            yield Edge(world, running)


def conforms(schema: str, body: Any) -> None:
    """`body` matches the component schema `schema` of the published OpenAPI document."""
    validator = Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": OPENAPI["components"]}
    )
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(body)]
    assert errors == [], errors


def one_to_one_pair(world: World) -> tuple[str, str]:
    """(origin local code, national code) of a cross-region matter both provinces implement
    with one live row each."""
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
    raise AssertionError("the bundled data has no 1:1 cross-region pair")


def submission(world: World, request_id: str) -> pb.SubmitApplicationRequest:
    local, national = one_to_one_pair(world)
    latest = world.gateway.registry.snapshot.latest()
    assert latest is not None
    return pb.SubmitApplicationRequest(
        request_id=request_id,
        origin_region=ORIGIN,
        target_region=TARGET,
        local_matter_code=local,
        applicant=pb.Applicant(
            id_type=pb.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
        ),
        materials=[
            pb.Material(material_id=m.id, paper=pb.PaperMaterial(description=m.name))
            for m in latest.document.matters[national].materials
            if m.required
        ],
    )


async def grpc_as(
    world: World, code: str, address: str
) -> application_pb2_grpc.ApplicationServiceStub:
    assert world.pki is not None
    assert world.stack is not None
    pair = world.pki.regions[code]
    channel = await world.stack.enter_async_context(
        grpc.aio.secure_channel(
            address,
            channel_credentials(world.pki.ca_cert, pair.cert, pair.key),
            options=[("grpc.ssl_target_name_override", "localhost")],
        )
    )
    return application_pb2_grpc.ApplicationServiceStub(channel)


async def test_http_submission_is_delivered_and_its_request_id_replays_over_grpc(
    edge: Edge,
) -> None:
    world = edge.world
    request = submission(world, "http-1")
    status, body = await edge.call(
        ORIGIN, "POST", "/v1/applications", json_format.MessageToDict(request)
    )
    assert status == 200, body
    conforms("gateway.api.v1.SubmitApplicationResponse", body)
    application = body["application"]
    assert application["state"] == "APPLICATION_STATE_DELIVERED"
    assert body["replayed"] is False  # printed although false: every field is
    assert application["receiptId"]
    assert application["originRegion"] == ORIGIN
    counters = await world.stubs[TARGET].counters()
    assert (counters.cases_created, counters.deliveries_received) == (1, 1)

    # The same request over gRPC, straight to the gateway: the same application, replayed.
    direct = await grpc_as(world, ORIGIN, world.gateway.address)
    replay = await direct.SubmitApplication(request)
    assert replay.replayed
    assert replay.application.application_id == application["applicationId"]
    # And once more over HTTP.
    status, again = await edge.call(
        ORIGIN, "POST", "/v1/applications", json_format.MessageToDict(request)
    )
    assert status == 200
    assert again["replayed"] is True
    assert again["application"]["applicationId"] == application["applicationId"]
    counters = await world.stubs[TARGET].counters()
    assert (counters.cases_created, counters.deliveries_received) == (1, 1)

    # Resolve its code, read, list and watch it over HTTP, at the resource paths.
    local = quote(request.local_matter_code, safe="")
    status, resolved = await edge.call(
        ORIGIN, "GET", f"/v1/regions/{ORIGIN}/localCodes/{local}:resolve"
    )
    assert status == 200, resolved
    conforms("gateway.api.v1.ResolveLocalCodeResponse", resolved)
    assert resolved["resolved"]["matter"]["code"] == application["nationalMatterCode"]
    name = application["name"]
    status, got = await edge.call(ORIGIN, "GET", f"/v1/{name}")
    assert status == 200
    conforms("gateway.api.v1.GetApplicationResponse", got)
    status, listed = await edge.call(ORIGIN, "GET", f"/v1/applications?region_code={ORIGIN}")
    assert status == 200
    conforms("gateway.api.v1.ListApplicationsResponse", listed)
    assert [a["applicationId"] for a in listed["applications"]] == [application["applicationId"]]
    for state in (pb.APPLICATION_STATE_ACCEPTED, pb.APPLICATION_STATE_COMPLETED):
        await world.stubs[TARGET].admin.DecideCase(
            admin_pb2.DecideCaseRequest(application_id=application["applicationId"], state=state)
        )
    status, watched = await edge.call(ORIGIN, "GET", f"/v1/{name}:watch")
    assert status == 200
    assert isinstance(watched, list)
    assert watched[-1]["application"]["state"] == "APPLICATION_STATE_COMPLETED"
    for message in watched:
        conforms("gateway.api.v1.WatchApplicationResponse", message)


async def test_errors_are_http_statuses_with_the_rpc_status_body(edge: Edge) -> None:
    bad = {"requestId": "bad", "originRegion": ORIGIN, "targetRegion": "5100"}
    status, body = await edge.call(ORIGIN, "POST", "/v1/applications", bad)
    assert status == 400, body
    conforms("google.rpc.Status", body)
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    (info,) = [d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert (info["reason"], info["domain"]) == ("INVALID_REQUEST", "tongban.gov.cn")
    (violations,) = [d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    fields = {v["field"] for v in violations["fieldViolations"]}
    assert {"target_region", "local_matter_code"} <= fields, fields

    status, body = await edge.call(
        ORIGIN, "GET", "/v1/applications/00000000-0000-4000-8000-000000000000"
    )
    assert (status, body["details"][0]["metadata"]["denial"]) == (403, "NOT_A_PARTY")
    status, body = await edge.call(ORIGIN, "GET", "/v1/catalogVersions/-/matters/999999999999")
    assert (status, body["details"][0]["reason"]) == (400, "INVALID_MATTER_CODE")
    status, body = await edge.call(ORIGIN, "GET", "/v1/catalogVersions/1999.1")
    assert (status, body["details"][0]["reason"]) == (404, "CATALOG_VERSION_NOT_FOUND")
    status, body = await edge.call(ORIGIN, "GET", "/v1/catalogVersions/-/matters/000117112000")
    assert status == 200
    conforms("gateway.api.v1.GetMatterResponse", body)
    # A path variable is one segment: a local code with `/` in it travels percent-encoded.
    status, body = await edge.call(ORIGIN, "GET", f"/v1/regions/{ORIGIN}/localCodes/a%2Fb:resolve")
    assert (status, body["details"][0]["reason"]) == (404, "LOCAL_CODE_NOT_FOUND")
    status, text = await edge.call(ORIGIN, "GET", "/v1/no/such/route")
    assert (status, text) == (404, "Could not resolve /v1/no/such/route to a method.")
    status, text = await edge.call(ORIGIN, "GET", "/v1/catalogVersions?bogus=1")
    assert status == 400
    assert "bogus" in text


async def test_a_client_supplied_forwarded_certificate_is_replaced_by_envoy(edge: Edge) -> None:
    """510000 sends 440000's certificate in the header: the gateway still sees 510000."""
    world = edge.world
    assert world.pki is not None
    forged = world.pki.regions[ORIGIN].cert.read_text()
    header = {HEADER: f'Cert="{quote(forged, safe="")}";URI=spiffe://tongban/region/{ORIGIN}'}
    status, body = await edge.call(
        TARGET, "GET", f"/v1/applications?region_code={ORIGIN}", headers=header
    )
    assert (status, body["details"][0]["metadata"]["denial"]) == (403, "NOT_OWN_REGION")
    status, body = await edge.call(
        TARGET,
        "POST",
        "/v1/applications",
        json_format.MessageToDict(submission(world, "forged-1")),
        headers=header,
    )
    assert (status, body["details"][0]["metadata"]["denial"]) == (403, "NOT_OWN_REGION")
    status, _ = await edge.call(
        TARGET, "GET", f"/v1/applications?region_code={TARGET}", headers=header
    )
    assert status == 200
    assert (await world.stubs[TARGET].counters()).deliveries_received == 0


async def test_a_province_calling_the_gateway_with_the_header_is_refused(edge: Edge) -> None:
    world = edge.world
    assert world.pki is not None
    forger = await grpc_as(world, TARGET, world.gateway.address)
    header = f'Cert="{quote(world.pki.regions[ORIGIN].cert.read_text(), safe="")}"'
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await forger.SubmitApplication(submission(world, "forged-2"), metadata=((HEADER, header),))
    info, _ = rich_error(caught.value)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.metadata["denial"] == "NOT_THE_EDGE"
    assert (await world.stubs[TARGET].counters()).deliveries_received == 0


async def test_grpc_clients_may_use_the_edge_too(edge: Edge) -> None:
    through_edge = await grpc_as(edge.world, ORIGIN, edge.edge.address)
    listed = await through_edge.ListApplications(pb.ListApplicationsRequest(region_code=ORIGIN))
    assert list(listed.applications) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await through_edge.ListApplications(pb.ListApplicationsRequest(region_code=TARGET))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_no_client_certificate_no_connection(edge: Edge) -> None:
    assert edge.world.pki is not None
    context = ssl.create_default_context(cafile=str(edge.world.pki.ca_cert))

    def request() -> int:
        connection = http.client.HTTPSConnection("localhost", edge.edge.port, context=context)
        try:
            connection.request("GET", "/v1/catalogVersions")
            return connection.getresponse().status
        finally:
            connection.close()

    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.to_thread(request)


TONGBAN = [sys.executable, "-m", "gateway.tools.cli"]


async def test_tongban_up_http_serves_through_envoy_and_stops_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    process = await asyncio.create_subprocess_exec(
        *TONGBAN,
        "up",
        "--port",
        "0",
        "--stub-base-port",
        "0",
        "--metrics-port",
        "-1",
        "--regions",
        f"{ORIGIN},{TARGET}",
        "--data-dir",
        str(data),
        "--standards-dir",
        str(ROOT / "standards"),
        "--http",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        edge_address = ""
        while not edge_address:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, "tongban up exited before listening"
            event = json.loads(line)
            if event.get("service") == "edge":
                edge_address = event["address"]
        port = int(edge_address.rpartition(":")[2])
        context = ssl.create_default_context(cafile=str(data / "pki" / "ca.pem"))
        context.load_cert_chain(
            str(data / "pki" / "clients" / f"region-{ORIGIN}.pem"),
            str(data / "pki" / "clients" / f"region-{ORIGIN}.key"),
        )

        def get(path: str) -> tuple[int, Any]:
            connection = http.client.HTTPSConnection("localhost", port, context=context)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                return response.status, json.loads(response.read())
            finally:
                connection.close()

        status, body = await asyncio.to_thread(get, f"/v1/applications?region_code={ORIGIN}")
        assert (status, body) == (200, {"applications": [], "nextPageToken": ""})
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-2000:]
    assert "HTTP/JSON on https://localhost:" in err.decode()
    with pytest.raises(ConnectionRefusedError):  # Envoy stopped with it
        await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port), 5)


async def test_tongban_up_http_needs_mtls(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *TONGBAN,
        "up",
        "--insecure",
        "--http",
        "0",
        "--data-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert err.decode().strip().splitlines() == [
        "tongban: EDGE_UNAVAILABLE: the edge proxy needs mTLS: drop --insecure to use --http"
    ]
