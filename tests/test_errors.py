"""Tests for gateway.errors: the tree is complete, documented, and becomes one wire shape.

Completeness guards: every error class has a canonical code and a stable UPPER_SNAKE reason, the
tree drawn at the top of errors.py matches the classes, and every UPPER_SNAKE word that a proto
comment puts in backticks is accounted for.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway import errors
from gateway.api.v1 import application_pb2, catalog_pb2, license_pb2, region_pb2
from gateway.app.config import ConfigError
from gateway.catalog.codes import AgencyCodeKind
from gateway.catalog.model import (
    CROSS_REGION_MODES,
    DIALECTS,
    SERVICE_OBJECTS,
    TIME_LIMIT_UNITS,
    CatalogDocument,
    Matter,
    RegionCatalogDocument,
    RegionEntry,
    TimeLimit,
)
from gateway.catalog.validation import check_region_catalog
from gateway.errors import (
    DOMAIN,
    FieldViolation,
    InvalidRequest,
    RegionCallError,
    TongbanError,
    Unavailable,
    all_error_types,
    build_status,
)

ROOT = Path(__file__).resolve().parents[1]
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$")
# The tree proper is what errors.py declares. Other modules may extend it (gateway.app.config's
# ConfigError, imported above so it is always checked; the region stubs' StubError when loaded);
# all_error_types() finds those too, and they are held to the rules that apply to them.
TREE = [cls for cls in all_error_types() if cls.__module__ == "gateway.errors"]
CONCRETE = [cls for cls in TREE if cls is not TongbanError]
EXTENSIONS = [cls for cls in all_error_types() if cls.__module__ != "gateway.errors"]


def details(status: status_pb2.Status) -> list[str]:
    return [d.TypeName() for d in status.details]


def unpack(status: status_pb2.Status, kind: type) -> list[object]:
    found = []
    for d in status.details:
        if d.Is(kind.DESCRIPTOR):  # type: ignore[attr-defined]
            message = kind()
            d.Unpack(message)
            found.append(message)
    return found


# -- the tree --------------------------------------------------------------------------------


def test_all_error_types_walks_the_whole_tree() -> None:
    declared = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, TongbanError)
    }
    assert set(TREE) == declared
    assert len(all_error_types()) == len(set(all_error_types()))
    assert ConfigError in EXTENSIONS


@pytest.mark.parametrize("cls", CONCRETE, ids=lambda c: c.__name__)
def test_every_error_has_a_real_code_and_its_own_upper_snake_reason(
    cls: type[TongbanError],
) -> None:
    assert isinstance(cls.code, grpc.StatusCode)
    assert cls.code not in (grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
    assert UPPER_SNAKE.match(cls.reason), cls.reason
    assert "reason" in vars(cls), f"{cls.__name__} inherits its parent's reason"


def test_reasons_of_the_tree_are_unique() -> None:
    counts = Counter(cls.reason for cls in TREE)
    assert [reason for reason, n in counts.items() if n > 1] == []


@pytest.mark.parametrize("cls", EXTENSIONS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_an_extension_reuses_its_base_reason_or_brings_a_new_one(
    cls: type[TongbanError],
) -> None:
    # Reusing the base's reason is intended (ConfigError is an INVALID_REQUEST); a reason of
    # its own must not collide with one the tree already gives another meaning.
    assert isinstance(cls.code, grpc.StatusCode)
    assert UPPER_SNAKE.match(cls.reason), cls.reason
    if "reason" in vars(cls):
        assert cls.reason not in {t.reason for t in TREE}, cls.__name__
    else:
        base = next(b for b in cls.__mro__[1:] if "reason" in vars(b))
        assert cls.reason == vars(base)["reason"]


def test_base_reasons_name_their_code() -> None:
    # The direct children of TongbanError are the per-code bases; their reason is the code's
    # name, except InvalidRequest, whose INVALID_REQUEST is the documented generic reason.
    bases = [cls for cls in TongbanError.__subclasses__() if cls in TREE]
    assert {cls.reason for cls in bases if cls.reason != cls.code.name} == {"INVALID_REQUEST"}
    for cls in CONCRETE:
        base = next(b for b in cls.__mro__ if b in bases)
        assert cls.code == base.code, f"{cls.__name__} changes its base's code"


def test_region_call_error_stays_outside_the_tree() -> None:
    assert not issubclass(RegionCallError, TongbanError)
    error = RegionCallError("440000", grpc.StatusCode.UNAVAILABLE, "down", pushback_ms=-1)
    assert error.region_code == "440000"
    assert "440000" in str(error)
    assert "UNAVAILABLE" in str(error)


def _drawn_tree() -> dict[str, list[str]]:
    """Class name → the UPPER_SNAKE words on its line of the tree drawn in errors.py."""
    drawn: dict[str, list[str]] = {}
    for line in (errors.__doc__ or "").splitlines():
        if "── " not in line and not line.strip().startswith("TongbanError"):
            continue
        match = re.match(r"^[\s│├└─]*([A-Z]\w+)(.*)$", line)
        assert match is not None, line
        rest = re.sub(r"\(.*?\)", "", match.group(2))  # drop the notes in parentheses
        drawn[match.group(1)] = re.findall(r"\b[A-Z][A-Z0-9_]+\b", rest)
    return drawn


def test_the_drawn_tree_lists_every_class_with_its_code_and_reason() -> None:
    drawn = _drawn_tree()
    assert set(drawn) == {cls.__name__ for cls in TREE} | {"RegionCallError"}
    for cls in CONCRETE:
        words = drawn[cls.__name__]
        assert words, f"{cls.__name__} is drawn without its reason"
        assert words[-1] == cls.reason, cls.__name__
        if len(words) == 2:
            assert words[0] == cls.code.name, cls.__name__
        parent = cls.__mro__[1]
        if parent is TongbanError:
            assert cls.code.name in words, f"{cls.__name__} is drawn without its code"


# -- the wire shape --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CONCRETE, ids=lambda c: c.__name__)
def test_a_plain_error_is_exactly_one_error_info(cls: type[TongbanError]) -> None:
    status = cls("it went wrong", metadata={"region_code": "440000"}).to_status()
    assert status.code == code_pb2.Code.Value(cls.code.name)
    assert status.message == "it went wrong"
    assert details(status) == ["google.rpc.ErrorInfo"]
    [info] = unpack(status, error_details_pb2.ErrorInfo)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        cls.reason,
        "tongban.gov.cn",
        {"region_code": "440000"},
    )
    assert DOMAIN == "tongban.gov.cn"


@pytest.mark.parametrize("cls", CONCRETE, ids=lambda c: c.__name__)
def test_violations_add_one_bad_request(cls: type[TongbanError]) -> None:
    violations = [
        FieldViolation("applicant.id_number", "check character does not match", "CHECK"),
        FieldViolation("materials[1].material_id", "unknown material"),
    ]
    status = cls("bad", field_violations=violations).to_status()
    assert details(status) == ["google.rpc.ErrorInfo", "google.rpc.BadRequest"]
    [bad] = unpack(status, error_details_pb2.BadRequest)
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [(v.field, v.description, v.reason) for v in bad.field_violations] == [
        ("applicant.id_number", "check character does not match", "CHECK"),
        ("materials[1].material_id", "unknown material", ""),
    ]


@pytest.mark.parametrize("cls", CONCRETE, ids=lambda c: c.__name__)
def test_a_retry_delay_adds_one_retry_info(cls: type[TongbanError]) -> None:
    status = cls("later", retry_delay=1.5).to_status()
    assert details(status) == ["google.rpc.ErrorInfo", "google.rpc.RetryInfo"]
    [retry] = unpack(status, error_details_pb2.RetryInfo)
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (1, 500_000_000)


def test_a_zero_delay_is_still_a_delay_and_none_is_none() -> None:
    assert details(Unavailable("x", retry_delay=0.0).to_status()) == [
        "google.rpc.ErrorInfo",
        "google.rpc.RetryInfo",
    ]
    assert details(Unavailable("x").to_status()) == ["google.rpc.ErrorInfo"]


def test_everything_at_once_keeps_the_order_info_bad_request_retry() -> None:
    status = build_status(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "RESOURCE_EXHAUSTED",
        "slow down",
        metadata={"a": "b"},
        field_violations=[FieldViolation("f", "d")],
        retry_delay=0.25,
    )
    assert details(status) == [
        "google.rpc.ErrorInfo",
        "google.rpc.BadRequest",
        "google.rpc.RetryInfo",
    ]
    converted = rpc_status.to_status(status)
    assert converted.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert converted.details == "slow down"


def test_an_error_copies_what_it_is_given() -> None:
    metadata = {"k": "v"}
    violations = [FieldViolation("f", "d")]
    error = InvalidRequest("m", metadata=metadata, field_violations=violations)
    metadata["k"] = "changed"
    violations.append(FieldViolation("g", "e"))
    assert error.metadata == {"k": "v"}
    assert error.field_violations == (FieldViolation("f", "d"),)
    assert str(error) == error.message == "m"


# -- reasons named in the proto --------------------------------------------------------------


def _proto_backticked_words() -> dict[str, list[str]]:
    """UPPER_SNAKE words in backticks inside proto comments → where they appear."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "proto" / "gateway" / "api" / "v1").glob("*.proto")):
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if "//" not in line:
                continue
            for word in re.findall(r"`([A-Z_]+)`", line.split("//", 1)[1]):
                found.setdefault(word, []).append(f"{path.name}:{number}")
    return found


def _enum_value_suffixes() -> set[str]:
    """`ACCEPTED` for `APPLICATION_STATE_ACCEPTED`: enum values as comments name them."""
    suffixes: set[str] = set()
    for module in (application_pb2, catalog_pb2, license_pb2, region_pb2):
        file: descriptor.FileDescriptor = module.DESCRIPTOR
        for enum in file.enum_types_by_name.values():
            prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
            for value in enum.values:
                assert value.name.startswith(prefix), value.name
                suffixes.add(value.name.removeprefix(prefix))
    return suffixes


def _row_warning_reasons() -> set[str]:
    """Every reason `check_region_catalog` can give a routable row, found by making each."""
    matter = Matter(
        "000117112000",
        "n",
        "01",
        "d",
        (),
        TimeLimit(1, "WORKING_DAYS"),
        TimeLimit(1, "WORKING_DAYS"),
        (),
        (),
    )
    catalog = CatalogDocument(
        "2025.1", datetime(2025, 1, 1, tzinfo=UTC), "p", {matter.code: matter}
    )
    agency_codes = ["11440000MBDCGK306L", "11440000MBDCGK306", "11440000MBDCGK306A"]
    agency_codes += ["009148976", "1111111111111111", "?"]
    rows = [RegionEntry(f"L{i}", (matter.code,), "n", "a", c) for i, c in enumerate(agency_codes)]
    rows += [rows[0], RegionEntry("R", (matter.code,), "n", "a", "", date(2020, 1, 1))]
    report = check_region_catalog(
        RegionCatalogDocument("440000", tuple(rows)), catalog, date(2025, 3, 1)
    )
    assert report.ok
    return {w.reason for w in report.warnings}


def test_every_reason_a_proto_comment_names_is_accounted_for() -> None:
    # Decision: a backticked UPPER_SNAKE word in a proto comment is one of
    # - an ErrorInfo reason of the error tree (what a caller switches on);
    # - an enum value as the comment abbreviates it (`QUEUED` = APPLICATION_STATE_QUEUED,
    #   `WRONG_TYPE` = LICENSE_VERDICT_WRONG_TYPE): verdicts travel in responses, not errors;
    # - a row-warning reason of a published region list (`LEGACY_ORG_CODE`), returned in
    #   RegionCatalogWarning.reason, not as an error;
    # - a value of a string vocabulary of the catalog model (`NATURAL_PERSON`).
    # Anything else is a reason the proto promises and nothing produces.
    error_reasons = {cls.reason for cls in TREE}
    enum_values = _enum_value_suffixes()
    warnings = _row_warning_reasons()
    vocabulary = set(SERVICE_OBJECTS) | set(CROSS_REGION_MODES) | set(TIME_LIMIT_UNITS)
    vocabulary |= set(DIALECTS)
    words = _proto_backticked_words()
    assert len(words) > 20
    unaccounted = {
        word: places
        for word, places in words.items()
        if word not in error_reasons | enum_values | warnings | vocabulary
    }
    assert unaccounted == {}
    # The error reasons the proto promises really are in the tree, not just look-alikes.
    promised = {w for w in words if w in error_reasons}
    assert {"LOCAL_CODE_AMBIGUOUS", "REGION_NOT_FOUND", "CATALOG_VERSION_ROLLBACK"} <= promised
    assert warnings == {k.value for k in AgencyCodeKind if k is not AgencyCodeKind.VALID_USCC} | {
        "DUPLICATE_ROW",
        "RETIRED",
    }


def test_status_size_is_bounded_whatever_the_error_echoes() -> None:
    from gateway.errors import (
        MAX_MESSAGE_BYTES,
        MAX_VIOLATIONS_BYTES,
        FieldViolation,
        InvalidRequest,
    )

    huge = "码" * 100_000
    error = InvalidRequest(
        f"no catalog version {huge}",
        metadata={"version": huge},
        field_violations=[FieldViolation(f"entries[{i}]", huge, "BAD") for i in range(10_000)],
    )
    status = error.to_status()
    assert len(status.message.encode()) <= MAX_MESSAGE_BYTES
    assert status.ByteSize() < 2 * MAX_VIOLATIONS_BYTES
    bad = error_details_pb2.BadRequest()
    status.details[1].Unpack(bad)
    assert bad.field_violations[-1].reason == "TRUNCATED"
    assert bad.field_violations[-1].description.startswith(
        f"{10_000 - len(bad.field_violations) + 1} more"
    )


def test_every_reason_of_the_tree_has_a_chinese_message_and_the_table_no_other() -> None:
    # The extensions of the tree that live in other modules, loaded so that the walk finds them.
    import gateway.app.server
    import gateway.storage.migrations
    import gateway.tools.edge
    import region_stubs.server

    assert gateway.app.server.PortInUse.reason == "PORT_IN_USE"
    assert gateway.storage.migrations.SchemaTooNew.reason == "STORE_SCHEMA_TOO_NEW"
    assert issubclass(region_stubs.server.StubError, TongbanError)
    assert gateway.tools.edge.EdgeUnavailable.reason == "EDGE_UNAVAILABLE"
    reasons = {cls.reason for cls in all_error_types()}
    assert set(errors.MESSAGES_ZH) == reasons
    for reason, message in errors.MESSAGES_ZH.items():
        assert message.endswith("。"), reason
        assert not any("a" <= c.lower() <= "z" for c in message), reason  # Chinese only


def test_a_reason_outside_the_tree_gets_the_message_of_its_code() -> None:
    relayed = errors.localized_message("FAULT_INJECTED", grpc.StatusCode.UNAVAILABLE)
    assert (relayed.locale, relayed.message) == ("zh-CN", errors.MESSAGES_ZH["UNAVAILABLE"])
    unknown = errors.localized_message("SOMETHING", grpc.StatusCode.DATA_LOSS)
    assert unknown.message == errors.MESSAGES_ZH["INTERNAL"]
