"""The LicenseService servicer: requests in, verdicts out.

An invalid licence is a verdict (the call answers OK); only a request that cannot be a
licence at all (empty, over 16 KiB), or whose expectations are over their bounds, is an
error, raised as `InvalidRequest` for the error interceptor to turn into a status. The
holder's id goes out masked.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta
from typing import Any

from google.protobuf import timestamp_pb2

from gateway.api.v1 import application_pb2, license_pb2, license_pb2_grpc
from gateway.catalog import fields
from gateway.licenses.token import CHINA_TZ, MAX_TOKEN_BYTES, Verdict
from gateway.licenses.verifier import LicenseVerifier, Verification, VerifiedLicense

__all__ = ["LicenseServicer", "to_response"]

_VERDICTS: dict[Verdict, license_pb2.LicenseVerdict.ValueType] = {
    verdict: license_pb2.LicenseVerdict.Value(f"LICENSE_VERDICT_{verdict.name}")
    for verdict in Verdict
}
_ID_TYPES: dict[str, application_pb2.IdType.ValueType] = {
    document.holder_code: document.id_type for document in fields.ID_DOCUMENTS
}
MAX_TYPE_CODE = 21
"""A 证照类型代码: the defining ministry's USCC and a 3-digit sequence."""


class LicenseServicer(license_pb2_grpc.LicenseServiceServicer):
    """`gateway.api.v1.LicenseService` over a LicenseVerifier."""

    def __init__(self, verifier: LicenseVerifier) -> None:
        self._verifier = verifier

    async def VerifyLicense(
        self, request: license_pb2.VerifyLicenseRequest, context: Any
    ) -> license_pb2.VerifyLicenseResponse:
        token = request.token
        expected_type, expected_holder = (
            request.expected_type_code,
            request.expected_holder_id_number,
        )
        fields.raise_if_any(
            "The request cannot be a licence verification.",
            fields.license_token(token, "token", MAX_TOKEN_BYTES),
            fields.text(expected_type, "expected_type_code", MAX_TYPE_CODE),
            fields.text(expected_holder, "expected_holder_id_number", fields.MAX_ID_NUMBER),
        )
        verification = await self._verifier.verify(
            token,
            expected_type_code=expected_type or None,
            expected_holder_id=expected_holder or None,
        )
        return to_response(verification)


def to_response(verification: Verification) -> license_pb2.VerifyLicenseResponse:
    """The wire form of a verification."""
    response = license_pb2.VerifyLicenseResponse(
        verdict=_VERDICTS[verification.verdict],
        detail=verification.detail,
        status_checked=verification.status_checked,
    )
    if verification.license is not None:
        response.license.CopyFrom(_license(verification.license))
    return response


@functools.lru_cache(maxsize=4096)
def _license(lic: VerifiedLicense) -> license_pb2.License:
    """The wire form of a decoded licence; memoized (a repeated token decodes to an equal
    VerifiedLicense), so the answer must only ever be copied from, never changed."""
    return license_pb2.License(
        identifier=lic.identifier,
        type_code=lic.type_code,
        license_number=lic.number,
        issuer_region=lic.issuer_region,
        issuing_agency_code=lic.issuing_agency_code,
        holder_id_type=_ID_TYPES[lic.holder_id_type],
        holder_id_masked=lic.holder_id_masked,
        valid_from=_timestamp(datetime.combine(lic.valid_from, time(), CHINA_TZ)),
        # valid_until is inclusive: the last second of that day in China.
        valid_until=_timestamp(_end_of_day(lic.valid_until)),
        key_id=lic.key_id,
        token_id=lic.token_id,
    )


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), CHINA_TZ) - timedelta(seconds=1)


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp
