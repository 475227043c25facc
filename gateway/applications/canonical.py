"""The canonical projection of a submission, whose digest decides what "the same request" is.

AIP-155: a repeated `request_id` with the same content replays the first answer; with other
content it is `REQUEST_ID_REUSED`. "Same" is judged on this projection, never on raw protobuf
bytes (serialization is not canonical across versions). Form fields are a map (their order does
not matter); materials are keyed by material id. The digest never leaves the gateway.
"""

from __future__ import annotations

import hashlib
import json

from gateway.api.v1 import application_pb2


def canonical_projection(request: application_pb2.SubmitApplicationRequest) -> dict[str, object]:
    """The parts of a submission that make it what it is."""
    materials: dict[str, object] = {}
    for m in request.materials:
        if m.WhichOneof("source") == "license_token":
            materials[m.material_id] = {"license_token": m.license_token}
        else:
            materials[m.material_id] = {
                "paper": {"description": m.paper.description, "file_sha256": m.paper.file_sha256}
            }
    return {
        "origin_region": request.origin_region,
        "target_region": request.target_region,
        "local_matter_code": request.local_matter_code,
        "national_matter_code": request.national_matter_code,
        "cross_region_mode": request.cross_region_mode,
        "applicant": {
            "id_type": request.applicant.id_type,
            "id_number": request.applicant.id_number,
            "display_name": request.applicant.display_name,
        },
        "form": {f.key: f.value for f in request.form_fields},
        "materials": materials,
    }


def request_digest(request: application_pb2.SubmitApplicationRequest) -> str:
    """Hex SHA-256 of the canonical projection."""
    text = json.dumps(
        canonical_projection(request), ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
