"""The canonical form of a submission, whose digest decides what "the same request" is.

AIP-155: a repeated `request_id` with the same content replays the first answer; with other
content it is `REQUEST_ID_REUSED`. "Same" is judged on the canonical form, never on raw
protobuf bytes (serialization is not canonical across versions). Form fields are a map (their
order does not matter); materials are keyed by material id. The digest never leaves the gateway.

The canonical form is a sequence of length-prefixed UTF-8 strings in a fixed order, form fields
and materials sorted, so no two different submissions encode alike. Digests are written
`v2:<hex SHA-256>`; a digest without that prefix was stored by an earlier release, whose form
was sorted canonical JSON (`legacy_request_digest`), and is still honoured for replays.
"""

from __future__ import annotations

import hashlib
import json

from gateway.api.v1 import application_pb2

PREFIX = "v2:"


def request_digest(request: application_pb2.SubmitApplicationRequest) -> str:
    """`v2:` and the hex SHA-256 of the submission's canonical form."""
    applicant = request.applicant
    parts = [
        request.origin_region,
        request.target_region,
        request.local_matter_code,
        request.national_matter_code,
        str(request.cross_region_mode),
        str(applicant.id_type),
        applicant.id_number,
        applicant.display_name,
        str(len(request.form_fields)),
    ]
    for key, value in sorted((f.key, f.value) for f in request.form_fields):
        parts += (key, value)
    materials = []
    for m in request.materials:
        if m.WhichOneof("source") == "license_token":
            materials.append((m.material_id, "licence", m.license_token, ""))
        else:
            materials.append((m.material_id, "paper", m.paper.description, m.paper.file_sha256))
    parts.append(str(len(materials)))
    for material in sorted(materials):
        parts += material
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode()
        digest.update(len(data).to_bytes(4, "big"))
        digest.update(data)
    return PREFIX + digest.hexdigest()


def same_request(
    stored_digest: str, digest: str, request: application_pb2.SubmitApplicationRequest
) -> bool:
    """Whether `request` (of `digest`) is the one a stored digest was computed from."""
    if stored_digest.startswith(PREFIX):
        return stored_digest == digest
    return stored_digest == legacy_request_digest(request)


def legacy_request_digest(request: application_pb2.SubmitApplicationRequest) -> str:
    """The digest of the first release: hex SHA-256 of the submission as sorted JSON."""
    materials: dict[str, object] = {}
    for m in request.materials:
        if m.WhichOneof("source") == "license_token":
            materials[m.material_id] = {"license_token": m.license_token}
        else:
            materials[m.material_id] = {
                "paper": {"description": m.paper.description, "file_sha256": m.paper.file_sha256}
            }
    projection = {
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
    text = json.dumps(projection, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
