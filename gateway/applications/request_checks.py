"""Validation of a submitted application: pure, complete, and silent about personal data.

Every problem of a request is reported at once as a field violation (AIP-193 `BadRequest`),
each judged by the shared validator of its kind of field (`catalog.fields`). Descriptions
never repeat an id number or a name: they say what is wrong, not what was sent. Limits are
part of the contract (see `application.proto`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from gateway.api.v1 import application_pb2, bundle_pb2, catalog_pb2
from gateway.catalog import fields
from gateway.errors import FieldViolation
from gateway.licenses.token import MAX_TOKEN_BYTES

MAX_REQUEST_ID = 64
MAX_LOCAL_CODE = 128
MAX_NAME = 100
MAX_FORM_FIELDS = 100
MAX_FIELD_KEY = 64
MAX_FIELD_VALUE = 4096
MAX_MATERIALS = 50
MAX_MATERIAL_ID = 16
MAX_DESCRIPTION = 200
MAX_LICENSE_TOKEN = MAX_TOKEN_BYTES
"""In UTF-8 bytes, as `LicenseService.VerifyLicense` counts them."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]+")
_FIELD_KEY = re.compile(r"[a-z][a-z0-9_]*")
_MATERIAL_ID = re.compile(r"[A-Za-z0-9_-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_THEME_CODE = re.compile(r"[A-Z0-9]{4,32}")
_ROLE = re.compile(r"[a-z][a-z_]*")
_CHANNEL = re.compile(r"[a-z0-9_-]+")
_MEMBER_ID = re.compile(r"[a-z][a-z0-9_]*")

MAX_ROLES = 16
MAX_ROLE = 32
MAX_CHANNEL = 32
MAX_FLOWS = 32
MAX_MEMBER_ID = 32

_ID_TYPES = application_pb2.IdType.DESCRIPTOR
_MODES = catalog_pb2.CrossRegionMode.DESCRIPTOR


def _applicant(
    a: application_pb2.Applicant, provinces: Collection[str]
) -> list[FieldViolation | None]:
    name = a.display_name
    return [
        fields.enum_value(a.id_type, "applicant.id_type", _ID_TYPES, required=True),
        fields.id_number(a.id_type, a.id_number, "applicant.id_number", provinces),
        fields.text(name, "applicant.display_name", MAX_NAME, required=True)
        or (
            FieldViolation("applicant.display_name", "required", "MISSING")
            if not name.strip()
            else None
        ),
    ]


def _request_id(value: str) -> FieldViolation | None:
    """The idempotency key of a submission (an application's or a bundle's)."""
    return fields.matching(
        value,
        "request_id",
        _REQUEST_ID,
        "1 to 64 of [A-Za-z0-9._:-]",
        MAX_REQUEST_ID,
        required=True,
    )


def _applicant_of(
    request: application_pb2.SubmitApplicationRequest | bundle_pb2.SubmitBundleRequest,
    provinces: Collection[str],
) -> list[FieldViolation | None]:
    """The applicant of a submission, required."""
    if not request.HasField("applicant"):
        return [FieldViolation("applicant", "required", "MISSING")]
    return _applicant(request.applicant, provinces)


def _form(items: Sequence[application_pb2.FormField]) -> list[FieldViolation | None]:
    if len(items) > MAX_FORM_FIELDS:
        return [FieldViolation("form_fields", f"at most {MAX_FORM_FIELDS} fields", "TOO_MANY")]
    out: list[FieldViolation | None] = []
    seen: set[str] = set()
    for i, f in enumerate(items):
        key = f"form_fields[{i}].key"
        bad_key = fields.matching(
            f.key,
            key,
            _FIELD_KEY,
            "must match [a-z][a-z0-9_]{0,63}",
            MAX_FIELD_KEY,
            required=True,
            reason="BAD_KEY",
        )
        if bad_key is None and f.key in seen:
            bad_key = FieldViolation(key, "duplicate key", "DUPLICATE")
        seen.add(f.key)
        out += (
            bad_key,
            fields.text(f.value, f"form_fields[{i}].value", MAX_FIELD_VALUE, printable=False),
        )
    return out


def _materials(items: Sequence[application_pb2.Material]) -> list[FieldViolation | None]:
    if len(items) > MAX_MATERIALS:
        return [FieldViolation("materials", f"at most {MAX_MATERIALS} materials", "TOO_MANY")]
    out: list[FieldViolation | None] = []
    seen: set[str] = set()
    for i, m in enumerate(items):
        path = f"materials[{i}]"
        bad_id = fields.matching(
            m.material_id,
            f"{path}.material_id",
            _MATERIAL_ID,
            "1 to 16 of [A-Za-z0-9_-]",
            MAX_MATERIAL_ID,
            required=True,
            reason="BAD_ID",
        )
        if bad_id is None and m.material_id in seen:
            bad_id = FieldViolation(f"{path}.material_id", "duplicate material", "DUPLICATE")
        seen.add(m.material_id)
        out.append(bad_id)
        source = m.WhichOneof("source")
        if source is None:
            out.append(
                FieldViolation(
                    f"{path}.source", "one of license_token or paper is required", "MISSING"
                )
            )
        elif source == "license_token":
            out.append(
                fields.license_token(m.license_token, f"{path}.license_token", MAX_LICENSE_TOKEN)
            )
        else:
            out += (
                fields.text(
                    m.paper.description,
                    f"{path}.paper.description",
                    MAX_DESCRIPTION,
                    printable=False,
                ),
                fields.matching(
                    m.paper.file_sha256,
                    f"{path}.paper.file_sha256",
                    _SHA256,
                    "64 lowercase hex characters",
                    64,
                    reason="BAD_DIGEST",
                ),
            )
    return out


def validate_submission(
    request: application_pb2.SubmitApplicationRequest, provinces: Collection[str]
) -> list[FieldViolation]:
    """Every field violation of a submission; empty when it is well formed.

    `provinces` are the known province codes: they bound a 公民身份号码's prefix and the
    origin of a national basic code. Whether the regions exist is the catalog's answer.
    """
    origin, target = request.origin_region, request.target_region
    target_violation = fields.region_code(target, "target_region")
    if target_violation is None and origin == target:
        target_violation = FieldViolation(
            "target_region", "must differ from origin_region", "SAME_REGION"
        )
    return fields.found(
        _request_id(request.request_id),
        fields.region_code(origin, "origin_region"),
        target_violation,
        fields.text(request.local_matter_code, "local_matter_code", MAX_LOCAL_CODE, required=True),
        fields.matter_code(request.national_matter_code, "national_matter_code", provinces),
        fields.enum_value(request.cross_region_mode, "cross_region_mode", _MODES),
        *_applicant_of(request, provinces),
        *_form(request.form_fields),
        *_materials(request.materials),
    )


def validate_bundle(
    request: bundle_pb2.SubmitBundleRequest, provinces: Collection[str]
) -> list[FieldViolation]:
    """Every field violation of a bundle submission's shape; empty when it is well formed.

    What the theme says of the form, the roles and the materials is judged against the
    catalog afterwards (`applications.bundle_service`).
    """
    return fields.found(
        _request_id(request.request_id),
        fields.region_code(request.origin_region, "origin_region"),
        fields.matching(
            request.theme_code,
            "theme_code",
            _THEME_CODE,
            "4 to 32 of [A-Z0-9]",
            32,
            required=True,
            reason="BAD_THEME_CODE",
        ),
        *_roles(request.roles),
        *_applicant_of(request, provinces),
        *_form(request.form_fields),
        *_materials(request.materials),
        *_consent(request),
    )


def _roles(items: Sequence[bundle_pb2.RoleBinding]) -> list[FieldViolation | None]:
    if not items:
        return [FieldViolation("roles", "the province of every role of the theme", "MISSING")]
    if len(items) > MAX_ROLES:
        return [FieldViolation("roles", f"at most {MAX_ROLES} roles", "TOO_MANY")]
    out: list[FieldViolation | None] = []
    seen: set[str] = set()
    for i, r in enumerate(items):
        bad = fields.matching(
            r.role,
            f"roles[{i}].role",
            _ROLE,
            "a role such as transfer_out",
            MAX_ROLE,
            required=True,
        )
        if bad is None and r.role in seen:
            bad = FieldViolation(f"roles[{i}].role", "each role once", "DUPLICATE")
        seen.add(r.role)
        out += (bad, fields.region_code(r.region_code, f"roles[{i}].region_code"))
    return out


def _consent(request: bundle_pb2.SubmitBundleRequest) -> list[FieldViolation | None]:
    if not request.HasField("consent"):
        return [FieldViolation("consent", "the applicant's one consent", "MISSING")]
    c = request.consent
    out: list[FieldViolation | None] = [
        None
        if c.HasField("consent_time")
        else FieldViolation("consent.consent_time", "required", "MISSING"),
        fields.matching(
            c.channel,
            "consent.channel",
            _CHANNEL,
            "1 to 32 of [a-z0-9_-]",
            MAX_CHANNEL,
            required=True,
        ),
    ]
    if len(c.flows) > MAX_FLOWS:
        return [*out, FieldViolation("consent.flows", f"at most {MAX_FLOWS} flows", "TOO_MANY")]
    seen: set[tuple[str, str]] = set()
    for i, f in enumerate(c.flows):
        path = f"consent.flows[{i}]"
        bad_member = fields.matching(
            f.member_id,
            f"{path}.member_id",
            _MEMBER_ID,
            "a member id",
            MAX_MEMBER_ID,
            required=True,
        )
        bad_material = fields.matching(
            f.material_id,
            f"{path}.material_id",
            _MATERIAL_ID,
            "1 to 16 of [A-Za-z0-9_-]",
            MAX_MATERIAL_ID,
            required=True,
        )
        key = (f.member_id, f.material_id)
        if bad_member is None and bad_material is None and key in seen:
            bad_member = FieldViolation(path, "each flow once", "DUPLICATE")
        seen.add(key)
        out += (bad_member, bad_material)
    return out
