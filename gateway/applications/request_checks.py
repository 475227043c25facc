"""Validation of a submitted application: pure, complete, and silent about personal data.

Every problem of a request is reported at once as a field violation (AIP-193 `BadRequest`).
Descriptions never repeat an id number or a name: they say what is wrong, not what was sent.
Limits are part of the contract (see `application.proto`).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from gateway.api.v1 import application_pb2
from gateway.catalog import codes
from gateway.errors import FieldViolation

MAX_REQUEST_ID = 64
MAX_LOCAL_CODE = 128
MAX_NAME = 100
MAX_FORM_FIELDS = 100
MAX_FIELD_VALUE = 4096
MAX_MATERIALS = 50
MAX_DESCRIPTION = 200
MAX_LICENSE_TOKEN = 16 * 1024

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_FIELD_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MATERIAL_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _region(value: str, field: str, out: list[FieldViolation]) -> None:
    if not value:
        out.append(FieldViolation(field, "required", "MISSING"))
    elif len(value) != 6 or not value.isdigit() or not value.isascii():
        out.append(FieldViolation(field, "a 6-digit GB/T 2260 province code", "BAD_REGION_CODE"))
    elif not value.endswith("0000"):
        out.append(
            FieldViolation(
                field,
                "a province-level code (XX0000), not a prefecture or county",
                "NOT_A_PROVINCE",
            )
        )


def _applicant(
    a: application_pb2.Applicant, provinces: Collection[str], out: list[FieldViolation]
) -> None:
    if a.id_type == application_pb2.ID_TYPE_UNSPECIFIED:
        out.append(FieldViolation("applicant.id_type", "required", "MISSING"))
    if not a.id_number:
        out.append(FieldViolation("applicant.id_number", "required", "MISSING"))
    elif a.id_type == application_pb2.ID_TYPE_CITIZEN_ID:
        problem = codes.validate_citizen_id(a.id_number, provinces)
        if problem is not None:
            out.append(
                FieldViolation(
                    "applicant.id_number", "not a valid 公民身份号码 (GB 11643)", problem.reason
                )
            )
    elif a.id_type == application_pb2.ID_TYPE_USCC:
        problem = codes.validate_uscc(a.id_number)
        if problem is not None:
            out.append(
                FieldViolation(
                    "applicant.id_number", "not a valid 统一社会信用代码 (GB 32100)", problem.reason
                )
            )
    if not a.display_name.strip():
        out.append(FieldViolation("applicant.display_name", "required", "MISSING"))
    elif len(a.display_name) > MAX_NAME or not a.display_name.isprintable():
        out.append(
            FieldViolation(
                "applicant.display_name", f"at most {MAX_NAME} printable characters", "MALFORMED"
            )
        )


def _form(fields: Collection[application_pb2.FormField], out: list[FieldViolation]) -> None:
    if len(fields) > MAX_FORM_FIELDS:
        out.append(FieldViolation("form_fields", f"at most {MAX_FORM_FIELDS} fields", "TOO_MANY"))
        return
    seen: set[str] = set()
    for i, f in enumerate(fields):
        if not _FIELD_KEY.fullmatch(f.key):
            out.append(
                FieldViolation(
                    f"form_fields[{i}].key", "must match [a-z][a-z0-9_]{0,63}", "BAD_KEY"
                )
            )
        elif f.key in seen:
            out.append(FieldViolation(f"form_fields[{i}].key", "duplicate key", "DUPLICATE"))
        seen.add(f.key)
        if len(f.value) > MAX_FIELD_VALUE:
            out.append(
                FieldViolation(
                    f"form_fields[{i}].value", f"at most {MAX_FIELD_VALUE} characters", "TOO_LONG"
                )
            )


def _materials(items: Collection[application_pb2.Material], out: list[FieldViolation]) -> None:
    if len(items) > MAX_MATERIALS:
        out.append(FieldViolation("materials", f"at most {MAX_MATERIALS} materials", "TOO_MANY"))
        return
    seen: set[str] = set()
    for i, m in enumerate(items):
        path = f"materials[{i}]"
        if not _MATERIAL_ID.fullmatch(m.material_id):
            out.append(FieldViolation(f"{path}.material_id", "1 to 16 of [A-Za-z0-9_-]", "BAD_ID"))
        elif m.material_id in seen:
            out.append(FieldViolation(f"{path}.material_id", "duplicate material", "DUPLICATE"))
        seen.add(m.material_id)
        source = m.WhichOneof("source")
        if source is None:
            out.append(
                FieldViolation(
                    f"{path}.source", "one of license_token or paper is required", "MISSING"
                )
            )
        elif source == "license_token":
            if not m.license_token or len(m.license_token) > MAX_LICENSE_TOKEN:
                out.append(
                    FieldViolation(
                        f"{path}.license_token", f"1 to {MAX_LICENSE_TOKEN} characters", "BAD_SIZE"
                    )
                )
        else:
            if len(m.paper.description) > MAX_DESCRIPTION:
                out.append(
                    FieldViolation(
                        f"{path}.paper.description",
                        f"at most {MAX_DESCRIPTION} characters",
                        "TOO_LONG",
                    )
                )
            if m.paper.file_sha256 and not _SHA256.fullmatch(m.paper.file_sha256):
                out.append(
                    FieldViolation(
                        f"{path}.paper.file_sha256", "64 lowercase hex characters", "BAD_DIGEST"
                    )
                )


def validate_submission(
    request: application_pb2.SubmitApplicationRequest, provinces: Collection[str]
) -> list[FieldViolation]:
    """Every field violation of a submission; empty when it is well formed."""
    out: list[FieldViolation] = []
    if not request.request_id:
        out.append(FieldViolation("request_id", "required", "MISSING"))
    elif not _REQUEST_ID.fullmatch(request.request_id):
        out.append(FieldViolation("request_id", "1 to 64 of [A-Za-z0-9._:-]", "MALFORMED"))
    _region(request.origin_region, "origin_region", out)
    _region(request.target_region, "target_region", out)
    if request.origin_region and request.origin_region == request.target_region:
        out.append(FieldViolation("target_region", "must differ from origin_region", "SAME_REGION"))
    if not request.local_matter_code:
        out.append(FieldViolation("local_matter_code", "required", "MISSING"))
    elif (
        len(request.local_matter_code) > MAX_LOCAL_CODE
        or not request.local_matter_code.isprintable()
    ):
        out.append(
            FieldViolation(
                "local_matter_code", f"1 to {MAX_LOCAL_CODE} printable characters", "MALFORMED"
            )
        )
    if request.national_matter_code and not (
        len(request.national_matter_code) == 12 and request.national_matter_code.isdigit()
    ):
        out.append(FieldViolation("national_matter_code", "a 12-digit basic code", "MALFORMED"))
    if not request.HasField("applicant"):
        out.append(FieldViolation("applicant", "required", "MISSING"))
    else:
        _applicant(request.applicant, provinces, out)
    _form(request.form_fields, out)
    _materials(request.materials, out)
    return out
