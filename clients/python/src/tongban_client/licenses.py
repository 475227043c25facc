"""`client.licenses`: e-licence (电子证照) tokens verified by the gateway."""

from __future__ import annotations

from tongban_client.api.v1 import license_pb2 as pb
from tongban_client.api.v1 import license_pb2_grpc
from tongban_client.calls import Calls


class Licenses:
    """The LicenseService."""

    def __init__(self, stub: license_pb2_grpc.LicenseServiceAsyncStub, calls: Calls):
        self._stub = stub
        self._calls = calls

    async def verify(
        self,
        token: str,
        *,
        expected_type_code: str = "",
        expected_holder_id_number: str = "",
        timeout: float | None = None,
    ) -> pb.VerifyLicenseResponse:
        """The gateway's verdict on the licence `token`. An invalid licence is a verdict
        (`REVOKED`, `EXPIRED`, …), not an error; `status_checked` false means VALID was
        answered without a revocation check. `expected_*` ask for `WRONG_TYPE` or
        `HOLDER_MISMATCH` when the licence is another's."""
        response: pb.VerifyLicenseResponse = await self._calls.unary(
            "VerifyLicense",
            self._stub.VerifyLicense,
            pb.VerifyLicenseRequest(
                token=token,
                expected_type_code=expected_type_code,
                expected_holder_id_number=expected_holder_id_number,
            ),
            timeout=timeout,
        )
        return response
