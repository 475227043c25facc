"""Hostile input limits on a real gateway: metadata size, concurrency cap, bounded fields."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from conftest import World, rich_error, start_world

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import catalog_pb2
from region_stubs.admin.v1 import admin_pb2

ORIGIN, TARGET = "440000", "510000"


async def test_oversized_metadata_is_refused(tmp_path: Path) -> None:
    async with start_world(tmp_path, (ORIGIN,), max_metadata_bytes=4096) as world:
        request = catalog_pb2.ListCatalogVersionsRequest()
        await world.catalog.ListCatalogVersions(request, metadata=(("x-small", "a" * 100),))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await world.catalog.ListCatalogVersions(request, metadata=(("x-big", "a" * 8000),))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await world.catalog.ListCatalogVersions(request)  # still serving


async def test_concurrency_cap_sheds_excess_calls(tmp_path: Path) -> None:
    async with start_world(tmp_path, (ORIGIN, TARGET), max_concurrent_rpcs=1) as world:
        snapshot = world.gateway.registry.snapshot
        # Hold the one slot with a watch on an application that stays QUEUED.
        await world.stubs[TARGET].admin.SetFaults(
            admin_pb2.SetFaultsRequest(faults=admin_pb2.FaultSettings(down=True))
        )
        latest = snapshot.latest()
        assert latest is not None
        local, national = _any_pair(world)
        matter = latest.document.matters[national]
        app = (
            await world.applications.SubmitApplication(
                pb.SubmitApplicationRequest(
                    request_id="r1",
                    origin_region=ORIGIN,
                    target_region=TARGET,
                    local_matter_code=local,
                    applicant=pb.Applicant(
                        id_type=pb.ID_TYPE_CITIZEN_ID,
                        id_number="110105199003071239",
                        display_name="张三",
                    ),
                    materials=[
                        pb.Material(material_id=m.id, paper=pb.PaperMaterial(description="x"))
                        for m in matter.materials
                        if m.required
                    ],
                ),
                timeout=10.0,
            )
        ).application
        watch = world.applications.WatchApplication(pb.WatchApplicationRequest(name=app.name))
        await watch.read()  # the stream is being served: it holds the slot
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await world.catalog.ListCatalogVersions(catalog_pb2.ListCatalogVersionsRequest())
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        watch.cancel()
        for _ in range(100):  # the slot frees once the server has seen the cancellation
            try:
                await world.catalog.ListCatalogVersions(catalog_pb2.ListCatalogVersionsRequest())
                break
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # noqa: PT017
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the slot was never freed")


def _any_pair(world: World) -> tuple[str, str]:
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
    raise AssertionError("no pair")


async def test_implementation_list_rows_are_bounded(tmp_path: Path) -> None:
    async with start_world(tmp_path, (ORIGIN,)) as world:
        row = catalog_pb2.RegionCatalogEntry(
            local_code="L1",
            national_codes=["002035011000"] * 101,
            local_name="名" * 201,
            agency_name="a" * 201,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await world.catalog.PublishRegionCatalog(
                catalog_pb2.PublishRegionCatalogRequest(
                    region_catalog=catalog_pb2.RegionCatalog(
                        name=f"regions/{ORIGIN}/catalog", entries=[row]
                    ),
                    validate_only=True,
                )
            )
        _, bad = rich_error(caught.value)
        assert bad is not None
        assert {(v.field, v.reason) for v in bad.field_violations} == {
            ("region_catalog.entries[0].national_codes", "TOO_MANY"),
            ("region_catalog.entries[0].local_name", "TOO_LONG"),
            ("region_catalog.entries[0].agency_name", "TOO_LONG"),
        }


async def test_page_tokens_are_bounded(tmp_path: Path) -> None:
    async with start_world(tmp_path, (ORIGIN,)) as world:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await world.applications.ListApplications(
                pb.ListApplicationsRequest(region_code=ORIGIN, page_token="e" * 5000)
            )
        assert rich_error(caught.value)[0].reason == "INVALID_PAGE_TOKEN"
