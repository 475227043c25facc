"""The submission digest: what makes two submissions "the same request" (AIP-155)."""

from __future__ import annotations

import pytest

from gateway.api.v1 import application_pb2 as pb
from gateway.applications.canonical import (
    legacy_request_digest,
    request_digest,
    same_request,
)


def submission(**changes: object) -> pb.SubmitApplicationRequest:
    request = pb.SubmitApplicationRequest(
        request_id="r-1",
        origin_region="440000",
        target_region="510000",
        local_matter_code="LOCAL-1",
        applicant=pb.Applicant(
            id_type=pb.ID_TYPE_CITIZEN_ID, id_number="11010519491231002X", display_name="张三"
        ),
        form_fields=[pb.FormField(key="a", value="1"), pb.FormField(key="b", value="2")],
        materials=[
            pb.Material(material_id="M01", license_token="token"),
            pb.Material(material_id="M02", paper=pb.PaperMaterial(description="表")),
        ],
    )
    for name, value in changes.items():
        field = getattr(request, name)
        if isinstance(value, list):
            del field[:]
            field.extend(value)
        else:
            setattr(request, name, value)
    return request


def test_request_id_and_the_order_of_fields_and_materials_do_not_matter() -> None:
    base = request_digest(submission())
    assert base.startswith("v2:")
    assert request_digest(submission(request_id="r-2")) == base
    swapped = submission(
        form_fields=[pb.FormField(key="b", value="2"), pb.FormField(key="a", value="1")],
        materials=[
            pb.Material(material_id="M02", paper=pb.PaperMaterial(description="表")),
            pb.Material(material_id="M01", license_token="token"),
        ],
    )
    assert request_digest(swapped) == base


@pytest.mark.parametrize(
    "changes",
    [
        {"target_region": "500000"},
        {"local_matter_code": "LOCAL-2"},
        {"national_matter_code": "X"},
        {"cross_region_mode": 2},
        {"form_fields": [pb.FormField(key="a", value="12")]},
        # the same characters split differently between key and value
        {"form_fields": [pb.FormField(key="a1", value=""), pb.FormField(key="b", value="2")]},
        {"form_fields": []},
        {"materials": [pb.Material(material_id="M01", license_token="token")]},
        {
            "materials": [
                pb.Material(material_id="M01", license_token="表"),
                pb.Material(material_id="M02", paper=pb.PaperMaterial(description="token")),
            ]
        },
    ],
)
def test_any_other_content_is_another_request(changes: dict[str, object]) -> None:
    assert request_digest(submission(**changes)) != request_digest(submission())


def test_the_applicant_is_part_of_the_request() -> None:
    other = submission()
    other.applicant.display_name = "李四"
    assert request_digest(other) != request_digest(submission())


def test_digests_stored_by_the_first_release_still_match() -> None:
    request = submission()
    legacy = legacy_request_digest(request)
    assert len(legacy) == 64
    assert same_request(legacy, request_digest(request), request)
    assert not same_request(legacy, request_digest(request), submission(target_region="500000"))
    assert same_request(request_digest(request), request_digest(request), request)
    assert not same_request("v2:" + "0" * 64, request_digest(request), request)


def test_digests_of_existing_id_types_are_pinned() -> None:
    # Computed by the release before the residence permit and permanent residence id types:
    # adding id types must not change what a stored digest of an older submission means.
    assert request_digest(submission()) == (
        "v2:06313a67b22e99565bd64cc9594c98e722fe6d9c737ddd643f6e9a3dce0dfc9e"
    )
    assert legacy_request_digest(submission()) == (
        "874aaedf5151bed476120b4f39c18e465cf9becbc6484ae25217a56b6da36497"
    )
    organisation = submission()
    organisation.applicant.id_type = pb.ID_TYPE_USCC
    organisation.applicant.id_number = "91350100M000100Y43"
    assert request_digest(organisation) == (
        "v2:31dd88f25454f67815bd54817dd09f1667af5085ed1023666636ec3b88eae78c"
    )


def test_the_id_type_is_part_of_the_request() -> None:
    digests = set()
    for id_type in pb.IdType.values():
        request = submission()
        request.applicant.id_type = id_type
        digests.add(request_digest(request))
    assert len(digests) == len(pb.IdType.values())
