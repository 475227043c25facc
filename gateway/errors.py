"""The one error tree of Tongban, and its translation into a `google.rpc.Status`.

    TongbanError                         (abstract: code + reason + message)
    ├── InvalidRequest                   INVALID_ARGUMENT   INVALID_REQUEST    (+ violations)
    │   ├── InvalidPageToken             INVALID_ARGUMENT   INVALID_PAGE_TOKEN
    │   ├── InvalidMatterCode            INVALID_ARGUMENT   INVALID_MATTER_CODE
    │   ├── CatalogInvalid               INVALID_ARGUMENT   CATALOG_INVALID
    │   ├── RegionCatalogInvalid         INVALID_ARGUMENT   REGION_CATALOG_INVALID
    │   ├── LicenseInvalid               INVALID_ARGUMENT   LICENSE_INVALID
    │   └── FlowNotConsented             INVALID_ARGUMENT   FLOW_NOT_CONSENTED
    ├── NotFound                         NOT_FOUND
    │   ├── RegionNotFound                                  REGION_NOT_FOUND
    │   ├── LocalCodeNotFound                               LOCAL_CODE_NOT_FOUND
    │   ├── MatterNotFound                                  MATTER_NOT_FOUND
    │   ├── MatterNotImplemented                            MATTER_NOT_IMPLEMENTED
    │   ├── ThemeNotFound                                   THEME_NOT_FOUND
    │   ├── CatalogVersionNotFound                          CATALOG_VERSION_NOT_FOUND
    │   ├── ApplicationNotFound                             APPLICATION_NOT_FOUND
    │   ├── BundleNotFound                                  BUNDLE_NOT_FOUND
    │   └── LicenseNotFound                                 LICENSE_NOT_FOUND
    ├── FailedPrecondition               FAILED_PRECONDITION
    │   ├── LocalCodeAmbiguous                              LOCAL_CODE_AMBIGUOUS
    │   ├── LocalCodeRetired                                LOCAL_CODE_RETIRED
    │   ├── MatterNotCrossRegion                            MATTER_NOT_CROSS_REGION
    │   ├── MaterialMissing                                 MATERIAL_MISSING
    │   ├── InvalidStateTransition                          INVALID_STATE_TRANSITION
    │   ├── ApplicationNotDelivered                         APPLICATION_NOT_DELIVERED
    │   ├── CatalogVersionRollback                          CATALOG_VERSION_ROLLBACK
    │   ├── BundleFinished                                  BUNDLE_FINISHED
    │   ├── BundleNotFinished                               BUNDLE_NOT_FINISHED
    │   └── AlreadyDecided                                  ALREADY_DECIDED
    ├── AlreadyExists                    ALREADY_EXISTS
    │   ├── RequestIdReused                                 REQUEST_ID_REUSED
    │   ├── ApplicationIdReused                             APPLICATION_ID_REUSED
    │   ├── CatalogVersionConflict                          CATALOG_VERSION_CONFLICT
    │   └── RatingExists                                    RATING_EXISTS
    ├── Unauthenticated                  UNAUTHENTICATED
    │   └── CatalogSignatureInvalid                         CATALOG_SIGNATURE_INVALID
    ├── PermissionDenied                 PERMISSION_DENIED  PERMISSION_DENIED
    ├── ResourceExhausted                RESOURCE_EXHAUSTED RESOURCE_EXHAUSTED (+ retry delay)
    ├── Unavailable                      UNAVAILABLE        UNAVAILABLE        (+ retry delay)
    │   └── StoreUnavailable                                STORE_UNAVAILABLE
    └── RegionCallError                  (a southbound call failed; carries the province's code)

Invariants:
- Every concrete error has a canonical gRPC code and a stable UPPER_SNAKE `reason`; reasons are
  part of the public contract and never change meaning.
- On the wire an error is exactly one `google.rpc.Status` with exactly one `ErrorInfo` (domain
  `tongban.gov.cn`), plus `BadRequest` when there are field violations and `RetryInfo` when a
  retry can help. Messages and metadata never carry personal data in clear.
- Every reason has a Chinese message for the clerk a province's platform shows it to
  (`MESSAGES_ZH`): the server adds it as a `LocalizedMessage` (locale `zh-CN`) beside the
  English message, which stays the one for developers and logs.
- Foreign errors are translated at one boundary each (grpc in `routing.client`, sqlite in
  `storage.group_commit`, asyncpg in `storage.postgres`, jwt in `licenses`); domain errors
  become a status in one interceptor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "tongban.gov.cn"
LOCALE = "zh-CN"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field of a request, as in `google.rpc.BadRequest.FieldViolation`."""

    field: str
    """Dotted path of the field, e.g. `applicant.id_number` or `materials[1].material_id`."""
    description: str
    """A sentence saying what is wrong, without the field's value when it is personal data."""
    reason: str = ""
    """Optional stable UPPER_SNAKE reason for this violation, e.g. `CITIZEN_ID_CHECK_MISMATCH`."""


class TongbanError(Exception):
    """Base of every error the gateway reports to a caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        field_violations: Iterable[FieldViolation] = (),
        retry_delay: float | None = None,
        trailers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.retry_delay = retry_delay
        self.trailers: tuple[tuple[str, str], ...] = tuple(trailers)
        """Extra trailing metadata sent with the status, e.g. `grpc-retry-pushback-ms`."""

    def to_status(self) -> status_pb2.Status:
        """The `google.rpc.Status` for this error."""
        return build_status(
            self.code,
            self.reason,
            self.message,
            metadata=self.metadata,
            field_violations=self.field_violations,
            retry_delay=self.retry_delay,
        )


class InvalidRequest(TongbanError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_REQUEST"


class InvalidPageToken(InvalidRequest):
    reason = "INVALID_PAGE_TOKEN"


class InvalidMatterCode(InvalidRequest):
    reason = "INVALID_MATTER_CODE"


class CatalogInvalid(InvalidRequest):
    reason = "CATALOG_INVALID"


class RegionCatalogInvalid(InvalidRequest):
    reason = "REGION_CATALOG_INVALID"


class LicenseInvalid(InvalidRequest):
    reason = "LICENSE_INVALID"


class FlowNotConsented(InvalidRequest):
    """A bundle needs a data flow that the applicant's consent does not allow."""

    reason = "FLOW_NOT_CONSENTED"


class NotFound(TongbanError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class RegionNotFound(NotFound):
    reason = "REGION_NOT_FOUND"


class LocalCodeNotFound(NotFound):
    reason = "LOCAL_CODE_NOT_FOUND"


class MatterNotFound(NotFound):
    reason = "MATTER_NOT_FOUND"


class MatterNotImplemented(NotFound):
    reason = "MATTER_NOT_IMPLEMENTED"


class ThemeNotFound(NotFound):
    reason = "THEME_NOT_FOUND"


class CatalogVersionNotFound(NotFound):
    reason = "CATALOG_VERSION_NOT_FOUND"


class ApplicationNotFound(NotFound):
    reason = "APPLICATION_NOT_FOUND"


class BundleNotFound(NotFound):
    reason = "BUNDLE_NOT_FOUND"


class LicenseNotFound(NotFound):
    """A province holds no valid licence of the type for the holder (FetchLicense)."""

    reason = "LICENSE_NOT_FOUND"


class FailedPrecondition(TongbanError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class LocalCodeAmbiguous(FailedPrecondition):
    reason = "LOCAL_CODE_AMBIGUOUS"


class LocalCodeRetired(FailedPrecondition):
    reason = "LOCAL_CODE_RETIRED"


class MatterNotCrossRegion(FailedPrecondition):
    reason = "MATTER_NOT_CROSS_REGION"


class MaterialMissing(FailedPrecondition):
    reason = "MATERIAL_MISSING"


class InvalidStateTransition(FailedPrecondition):
    reason = "INVALID_STATE_TRANSITION"


class ApplicationNotDelivered(FailedPrecondition):
    reason = "APPLICATION_NOT_DELIVERED"


class CatalogVersionRollback(FailedPrecondition):
    reason = "CATALOG_VERSION_ROLLBACK"


class BundleFinished(FailedPrecondition):
    """A withdrawal of a bundle every member of which is terminal."""

    reason = "BUNDLE_FINISHED"


class BundleNotFinished(FailedPrecondition):
    """A rating of a bundle some member of which is not terminal."""

    reason = "BUNDLE_NOT_FINISHED"


class AlreadyDecided(FailedPrecondition):
    """A province refuses to withdraw a case it has decided (WithdrawApplication)."""

    reason = "ALREADY_DECIDED"


class AlreadyExists(TongbanError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class RequestIdReused(AlreadyExists):
    reason = "REQUEST_ID_REUSED"


class ApplicationIdReused(AlreadyExists):
    reason = "APPLICATION_ID_REUSED"


class CatalogVersionConflict(AlreadyExists):
    reason = "CATALOG_VERSION_CONFLICT"


class RatingExists(AlreadyExists):
    """The bundle (or that member province) was rated already."""

    reason = "RATING_EXISTS"


class Unauthenticated(TongbanError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class CatalogSignatureInvalid(Unauthenticated):
    reason = "CATALOG_SIGNATURE_INVALID"


class PermissionDenied(TongbanError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class ResourceExhausted(TongbanError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(TongbanError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class StoreUnavailable(Unavailable):
    reason = "STORE_UNAVAILABLE"


class RegionCallError(Exception):
    """A call to a province failed: the one translation of `grpc.aio.AioRpcError`.

    Not a `TongbanError`: it never reaches a caller as such; routing decides what it means.
    """

    def __init__(
        self,
        region_code: str,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        pushback_ms: int | None = None,
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(f"{region_code}: {code.name}: {message}")
        self.region_code = region_code
        self.code = code
        self.message = message
        self.reason = reason
        """The ErrorInfo reason the province sent, if any."""
        self.pushback_ms = pushback_ms
        """`grpc-retry-pushback-ms` from the trailers; negative means do not retry."""
        self.retry_delay = retry_delay
        """`RetryInfo.retry_delay` from the status details, in seconds."""


def all_error_types() -> list[type[TongbanError]]:
    """Every error class in the tree, for completeness checks."""
    found: list[type[TongbanError]] = []
    pending: list[type[TongbanError]] = [TongbanError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


MESSAGES_ZH: Mapping[str, str] = {
    "INTERNAL": "系统内部错误，请稍后重试；如仍失败，请联系运维人员。",
    "INVALID_REQUEST": "请求内容不符合要求，请按提示修改后重新提交。",
    "INVALID_PAGE_TOKEN": "分页标记无效或已过期，请从第一页重新查询。",
    "INVALID_MATTER_CODE": "事项编码格式不正确，请核对后重新输入。",
    "CATALOG_INVALID": "事项目录文件不符合规范，未予发布。",
    "REGION_CATALOG_INVALID": "实施清单中有无法对应国家目录的条目，未予发布。",
    "LICENSE_INVALID": "电子证照无效，无法代替纸质材料，请核对证照或提交纸质材料。",
    "FLOW_NOT_CONSENTED": "申请人未同意调用所需的电子证照，请取得申请人同意或改交纸质材料。",
    "NOT_FOUND": "未找到所查询的对象。",
    "REGION_NOT_FOUND": "未找到该省份，请核对行政区划代码。",
    "LOCAL_CODE_NOT_FOUND": "该省实施清单中没有此事项编码，请核对本地事项编码。",
    "MATTER_NOT_FOUND": "国家事项目录中没有此事项。",
    "MATTER_NOT_IMPLEMENTED": "受理省份未实施该事项，暂不能跨省办理。",
    "THEME_NOT_FOUND": "事项目录中没有此“一件事”。",
    "CATALOG_VERSION_NOT_FOUND": "未找到该版本的事项目录。",
    "APPLICATION_NOT_FOUND": "未找到该申请。",
    "BUNDLE_NOT_FOUND": "未找到该“一件事”申请。",
    "LICENSE_NOT_FOUND": "该省没有申请人此类有效电子证照，请改交纸质材料。",
    "FAILED_PRECONDITION": "当前状态下不能办理此操作。",
    "LOCAL_CODE_AMBIGUOUS": "该本地事项编码对应多个国家事项，请指明国家事项编码。",
    "LOCAL_CODE_RETIRED": "该本地事项编码已取消，请使用现行的事项编码。",
    "MATTER_NOT_CROSS_REGION": "该事项不支持跨省通办。",
    "MATERIAL_MISSING": "缺少必要的申请材料，请补齐后重新提交。",
    "INVALID_STATE_TRANSITION": "申请当前的办理状态不允许此变更。",
    "APPLICATION_NOT_DELIVERED": "申请尚未送达受理省份。",
    "CATALOG_VERSION_ROLLBACK": "该目录版本不比已发布的版本新，未予发布。",
    "BUNDLE_FINISHED": "该“一件事”的各事项均已办结，不能撤回。",
    "BUNDLE_NOT_FINISHED": "该“一件事”尚未全部办结，暂不能评价。",
    "ALREADY_DECIDED": "受理省份已作出决定，不能撤回。",
    "ALREADY_EXISTS": "该对象已经存在。",
    "REQUEST_ID_REUSED": "该请求编号已用于另一份申请，请使用新的请求编号。",
    "APPLICATION_ID_REUSED": "该申请编号已用于内容不同的另一份申请，未予受理。",
    "CATALOG_VERSION_CONFLICT": "该版本号已发布过不同内容，未予发布。",
    "RATING_EXISTS": "已经评价过，不能重复评价。",
    "UNAUTHENTICATED": "身份认证失败，请检查数字证书。",
    "CATALOG_SIGNATURE_INVALID": "目录文件的签名无效，未予发布。",
    "PERMISSION_DENIED": "无权办理此操作。",
    "RESOURCE_EXHAUSTED": "请求过于频繁，请稍后重试。",
    "UNAVAILABLE": "服务暂时不可用，请稍后重试。",
    "STORE_UNAVAILABLE": "数据存储暂时不可用，请稍后用同一请求编号重试。",
    "STORE_SCHEMA_TOO_NEW": "数据库结构版本高于本网关版本，请升级网关。",
    "CONFIG_INVALID": "网关配置有误，请联系运维人员。",
    "PORT_IN_USE": "端口已被占用，请停止占用的进程或改用其他端口。",
    "EDGE_UNAVAILABLE": "边缘代理未安装或未能启动，请检查其安装与证书。",
}
"""The message a clerk sees for each reason, in Chinese (`LOCALE`); a test checks that every
reason of the tree has one. Each says what happened and what to do, without the request's
values: the English message carries those."""

_MESSAGES_ZH_BY_CODE: Mapping[grpc.StatusCode, str] = {
    grpc.StatusCode.INVALID_ARGUMENT: MESSAGES_ZH["INVALID_REQUEST"],
    grpc.StatusCode.NOT_FOUND: MESSAGES_ZH["NOT_FOUND"],
    grpc.StatusCode.FAILED_PRECONDITION: MESSAGES_ZH["FAILED_PRECONDITION"],
    grpc.StatusCode.ALREADY_EXISTS: MESSAGES_ZH["ALREADY_EXISTS"],
    grpc.StatusCode.UNAUTHENTICATED: MESSAGES_ZH["UNAUTHENTICATED"],
    grpc.StatusCode.PERMISSION_DENIED: MESSAGES_ZH["PERMISSION_DENIED"],
    grpc.StatusCode.RESOURCE_EXHAUSTED: MESSAGES_ZH["RESOURCE_EXHAUSTED"],
    grpc.StatusCode.UNAVAILABLE: MESSAGES_ZH["UNAVAILABLE"],
}


def localized_message(reason: str, code: grpc.StatusCode) -> error_details_pb2.LocalizedMessage:
    """The clerk's message for `reason`; a reason outside the tree (relayed from elsewhere)
    gets the message of its code."""
    message = MESSAGES_ZH.get(reason) or _MESSAGES_ZH_BY_CODE.get(code, MESSAGES_ZH["INTERNAL"])
    return error_details_pb2.LocalizedMessage(locale=LOCALE, message=message)


def unpack_details(status: status_pb2.Status) -> list[Message]:
    """The ErrorInfo, BadRequest, RetryInfo and LocalizedMessage details of a status, unpacked
    (others skipped)."""
    found: list[Message] = []
    for detail in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
            error_details_pb2.LocalizedMessage,
        ):
            if detail.Is(cls.DESCRIPTOR):
                message = cls()
                detail.Unpack(message)
                found.append(message)
    return found


MAX_MESSAGE_BYTES = 300
"""Longest status message (UTF-8 bytes). The status travels in trailers, which a client drops
above its metadata limit (8 KiB soft by default): an error that echoes a hostile input must
stay small enough to arrive."""
MAX_METADATA_VALUE_BYTES = 128
"""Longest ErrorInfo metadata value (UTF-8 bytes)."""
MAX_VIOLATIONS_BYTES = 3000
"""Serialized size of BadRequest beyond which further violations are counted, not listed."""


def _clip(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."


def build_status(
    code: grpc.StatusCode,
    reason: str,
    message: str,
    *,
    metadata: Mapping[str, str] | None = None,
    field_violations: Iterable[FieldViolation] = (),
    retry_delay: float | None = None,
) -> status_pb2.Status:
    """Builds the wire status: one ErrorInfo, BadRequest if any violations, RetryInfo if set.

    Sizes are bounded (`MAX_*`): long texts are clipped, and violations past the budget are
    replaced by one `TRUNCATED` violation that counts them.
    """
    status = status_pb2.Status(code=_CODE_NUMBERS[code], message=_clip(message, MAX_MESSAGE_BYTES))
    info = error_details_pb2.ErrorInfo(
        reason=reason,
        domain=DOMAIN,
        metadata={
            _clip(k, MAX_METADATA_VALUE_BYTES): _clip(v, MAX_METADATA_VALUE_BYTES)
            for k, v in (metadata or {}).items()
        },
    )
    status.details.add().Pack(info)
    violations = list(field_violations)
    if violations:
        bad = error_details_pb2.BadRequest()
        for shown, v in enumerate(violations):
            if bad.ByteSize() > MAX_VIOLATIONS_BYTES:
                bad.field_violations.add(
                    description=f"{len(violations) - shown} more violation(s) not listed",
                    reason="TRUNCATED",
                )
                break
            bad.field_violations.add(
                field=_clip(v.field, MAX_METADATA_VALUE_BYTES),
                description=_clip(v.description, MAX_MESSAGE_BYTES),
                reason=_clip(v.reason, MAX_METADATA_VALUE_BYTES),
            )
        status.details.add().Pack(bad)
    if retry_delay is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_delay * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


_CODE_NUMBERS: dict[grpc.StatusCode, int] = {c: c.value[0] for c in grpc.StatusCode}
assert _CODE_NUMBERS[grpc.StatusCode.INVALID_ARGUMENT] == code_pb2.INVALID_ARGUMENT
