"""Real traffic for observability tests: valid submissions through a running world."""

from __future__ import annotations

from datetime import UTC, datetime

from conftest import World

from gateway.api.v1 import application_pb2 as pb

ORIGIN, TARGET = "440000", "510000"
CITIZEN = "110105199003071239"
NAME = "张三丰"


def matter_pair(world: World, origin: str = ORIGIN, target: str = TARGET) -> tuple[str, str]:
    """(origin local code, national code) of a cross-region matter both provinces implement."""
    snapshot = world.gateway.registry.snapshot
    latest = snapshot.latest()
    assert latest is not None
    today = datetime.now(UTC).date()
    for code, matter in latest.document.matters.items():
        if not matter.cross_region_modes:
            continue
        src = [e.local_code for e in snapshot.region_indexes()[origin].live_entries(code, today)]
        dst = [e.local_code for e in snapshot.region_indexes()[target].live_entries(code, today)]
        if len(src) == 1 and len(dst) == 1:
            entry = snapshot.region_indexes()[origin].by_local[src[0]]
            if len(entry.national_codes) == 1:
                return src[0], code
    raise AssertionError("the bundled data has no 1:1 cross-region pair")


def submission(world: World, request_id: str, **overrides: object) -> pb.SubmitApplicationRequest:
    """A complete, valid submission: every required material as paper."""
    local, national = matter_pair(world)
    latest = world.gateway.registry.snapshot.latest()
    assert latest is not None
    matter = latest.document.matters[national]
    values: dict[str, object] = {
        "request_id": request_id,
        "origin_region": ORIGIN,
        "target_region": TARGET,
        "local_matter_code": local,
        "applicant": pb.Applicant(
            id_type=pb.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name=NAME
        ),
        "materials": [
            pb.Material(material_id=m.id, paper=pb.PaperMaterial(description=m.name))
            for m in matter.materials
            if m.required
        ],
    }
    values.update(overrides)
    return pb.SubmitApplicationRequest(**values)  # type: ignore[arg-type]
