"""Tests for gateway.applications.request_checks: every branch, with its exact field and reason.

Each case changes one thing of a valid submission and names every violation that change
must produce, in order, and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.api.v1 import application_pb2 as pb
from gateway.api.v1 import bundle_pb2, catalog_pb2
from gateway.applications.request_checks import validate_bundle, validate_submission
from gateway.catalog.codes import citizen_id_check_char
from gateway.catalog.registry import load_provinces
from gateway.licenses.token import MAX_TOKEN_BYTES

PROVINCES = frozenset(load_provinces(Path(__file__).resolve().parents[2] / "standards"))
CITIZEN = "110105199003071239"
USCC = "91350100M000100Y43"
HMT_PERMITS = ("810000199003071237", "820000200002290048", "830000194912310021")  # synthetic
FOREIGN_2023 = "933100199003071232"  # synthetic, check computed
FOREIGN_2017 = "USA330619900307"  # synthetic
DIGEST = "0123456789abcdef" * 4

Change = Callable[[pb.SubmitApplicationRequest], object]


def valid() -> pb.SubmitApplicationRequest:
    return pb.SubmitApplicationRequest(
        request_id="req-1",
        origin_region="440000",
        target_region="510000",
        local_matter_code="11440100MBM0A4WE4P3000133021000",
        applicant=pb.Applicant(
            id_type=pb.ID_TYPE_CITIZEN_ID, id_number=CITIZEN, display_name="张三"
        ),
        form_fields=[pb.FormField(key="reason", value="工作调动")],
        materials=[
            pb.Material(material_id="M01", license_token="h.p.s"),
            pb.Material(
                material_id="M02", paper=pb.PaperMaterial(description="户口簿", file_sha256=DIGEST)
            ),
        ],
    )


def applicant(id_type: int, id_number: str) -> Change:
    def change(r: pb.SubmitApplicationRequest) -> None:
        r.applicant.id_type = id_type  # type: ignore[assignment]
        r.applicant.id_number = id_number

    return change


def setting(path: str, value: object) -> Change:
    """Sets a (dotted) field of the request."""

    def change(r: pb.SubmitApplicationRequest) -> None:
        *parents, name = path.split(".")
        target: object = r
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, name, value)

    return change


def form(*items: tuple[str, str]) -> Change:
    def change(r: pb.SubmitApplicationRequest) -> None:
        del r.form_fields[:]
        r.form_fields.extend(pb.FormField(key=k, value=v) for k, v in items)

    return change


def materials(*items: pb.Material) -> Change:
    def change(r: pb.SubmitApplicationRequest) -> None:
        del r.materials[:]
        r.materials.extend(items)

    return change


def paper(description: str = "", file_sha256: str = "") -> pb.Material:
    return pb.Material(
        material_id="M01", paper=pb.PaperMaterial(description=description, file_sha256=file_sha256)
    )


def token(text: str) -> pb.Material:
    return pb.Material(material_id="M01", license_token=text)


def with_check(first17: str) -> str:
    return first17 + citizen_id_check_char(first17)


CASES: list[tuple[str, Change, list[tuple[str, str]]]] = [
    # -- request_id
    ("request id missing", setting("request_id", ""), [("request_id", "MISSING")]),
    ("request id at its bound", setting("request_id", "r" * 64), []),
    ("request id over its bound", setting("request_id", "r" * 65), [("request_id", "TOO_LONG")]),
    ("request id with a space", setting("request_id", "req 1"), [("request_id", "MALFORMED")]),
    ("request id full width", setting("request_id", "ｒｅｑ"), [("request_id", "MALFORMED")]),
    ("request id of every allowed kind", setting("request_id", "aZ09._:-"), []),
    # -- regions
    ("origin missing", setting("origin_region", ""), [("origin_region", "MISSING")]),
    ("origin short", setting("origin_region", "44"), [("origin_region", "BAD_REGION_CODE")]),
    (
        "origin in full-width digits",
        setting("origin_region", "４４００００"),
        [("origin_region", "BAD_REGION_CODE")],
    ),
    ("origin a county", setting("origin_region", "440305"), [("origin_region", "NOT_A_PROVINCE")]),
    ("target missing", setting("target_region", ""), [("target_region", "MISSING")]),
    ("target letters", setting("target_region", "51000X"), [("target_region", "BAD_REGION_CODE")]),
    (
        "target a prefecture",
        setting("target_region", "510100"),
        [("target_region", "NOT_A_PROVINCE")],
    ),
    ("target the origin", setting("target_region", "440000"), [("target_region", "SAME_REGION")]),
    ("an unknown province is the catalog's NOT_FOUND", setting("target_region", "990000"), []),
    (
        "both malformed alike: no SAME_REGION on top",
        lambda r: (setting("origin_region", "44")(r), setting("target_region", "44")(r)),
        [("origin_region", "BAD_REGION_CODE"), ("target_region", "BAD_REGION_CODE")],
    ),
    # -- matter codes
    ("local code missing", setting("local_matter_code", ""), [("local_matter_code", "MISSING")]),
    ("local code at its bound", setting("local_matter_code", "L" * 128), []),
    (
        "local code over its bound",
        setting("local_matter_code", "L" * 129),
        [("local_matter_code", "TOO_LONG")],
    ),
    (
        "local code not printable",
        setting("local_matter_code", "L\n1"),
        [("local_matter_code", "MALFORMED")],
    ),
    ("national code given", setting("national_matter_code", "000117112000"), []),
    (
        "national code short",
        setting("national_matter_code", "00011711200"),
        [("national_matter_code", "BASIC_CODE_BAD_LENGTH")],
    ),
    (
        "national code in full-width digits",
        setting("national_matter_code", "０００１１７１１２０００"),
        [("national_matter_code", "BASIC_CODE_BAD_CHARACTER")],
    ),
    (
        "national code of no known origin",
        setting("national_matter_code", "990117112000"),
        [("national_matter_code", "BASIC_CODE_UNKNOWN_ORIGIN")],
    ),
    (
        "national code of no matter type",
        setting("national_matter_code", "009917112000"),
        [("national_matter_code", "BASIC_CODE_BAD_MATTER_TYPE")],
    ),
    # -- cross_region_mode
    ("mode given", setting("cross_region_mode", catalog_pb2.CROSS_REGION_MODE_MULTI_REGION), []),
    ("mode unknown", setting("cross_region_mode", 9), [("cross_region_mode", "UNKNOWN")]),
    ("mode negative", setting("cross_region_mode", -1), [("cross_region_mode", "UNKNOWN")]),
    # -- applicant
    ("applicant missing", lambda r: r.ClearField("applicant"), [("applicant", "MISSING")]),
    (
        "id type unspecified",
        applicant(pb.ID_TYPE_UNSPECIFIED, CITIZEN),
        [("applicant.id_type", "MISSING")],
    ),
    (
        "id type 99 with any number: refused, not skipped",
        applicant(99, "anything at all"),
        [("applicant.id_type", "UNKNOWN")],
    ),
    (
        "id type -1 with any number",
        applicant(-1, "x"),
        [("applicant.id_type", "UNKNOWN")],
    ),
    (
        "unknown id type and no number",
        applicant(99, ""),
        [("applicant.id_type", "UNKNOWN"), ("applicant.id_number", "MISSING")],
    ),
    (
        "unknown id type and an unbounded number",
        applicant(99, "1" * 100_000),
        [("applicant.id_type", "UNKNOWN"), ("applicant.id_number", "TOO_LONG")],
    ),
    (
        "id number missing",
        applicant(pb.ID_TYPE_CITIZEN_ID, ""),
        [("applicant.id_number", "MISSING")],
    ),
    (
        "id number over the longest document",
        applicant(pb.ID_TYPE_USCC, USCC + "0"),
        [("applicant.id_number", "TOO_LONG")],
    ),
    # each id type, valid
    ("USCC applicant", applicant(pb.ID_TYPE_USCC, USCC), []),
    ("Hong Kong resident", applicant(pb.ID_TYPE_HMT_RESIDENCE_PERMIT, HMT_PERMITS[0]), []),
    ("Macao resident", applicant(pb.ID_TYPE_HMT_RESIDENCE_PERMIT, HMT_PERMITS[1]), []),
    ("Taiwan resident", applicant(pb.ID_TYPE_HMT_RESIDENCE_PERMIT, HMT_PERMITS[2]), []),
    ("foreigner, 2023 card", applicant(pb.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE, FOREIGN_2023), []),
    ("foreigner, 2017 card", applicant(pb.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE, FOREIGN_2017), []),
    # 公民身份号码, each invalid way
    *(
        (
            f"citizen id: {why}",
            applicant(pb.ID_TYPE_CITIZEN_ID, number),
            [("applicant.id_number", reason)],
        )
        for why, number, reason in (
            ("15 digits", "110105900307123", "CITIZEN_ID_BAD_LENGTH"),
            ("a letter", "11010519900307123a", "CITIZEN_ID_BAD_CHARACTER"),
            ("full width", "１10105199003071239", "CITIZEN_ID_BAD_CHARACTER"),
            ("Hong Kong's address code", HMT_PERMITS[0], "CITIZEN_ID_UNKNOWN_PROVINCE"),
            ("30 February", with_check("11010519900230123"), "CITIZEN_ID_BAD_DATE"),
            ("check digit", "110105199003071238", "CITIZEN_ID_CHECK_MISMATCH"),
        )
    ),
    # 统一社会信用代码, each invalid way
    *(
        (f"USCC: {why}", applicant(pb.ID_TYPE_USCC, number), [("applicant.id_number", reason)])
        for why, number, reason in (
            ("17 characters", USCC[:17], "USCC_BAD_LENGTH"),
            ("a letter outside the charset", "91350100M000100I43", "USCC_BAD_CHARACTER"),
            ("check character", "91350100M000100Y44", "USCC_CHECK_MISMATCH"),
            ("a citizen's number", CITIZEN, "USCC_CHECK_MISMATCH"),
        )
    ),
    # 港澳台居民居住证, each invalid way
    *(
        (
            f"residence permit: {why}",
            applicant(pb.ID_TYPE_HMT_RESIDENCE_PERMIT, number),
            [("applicant.id_number", reason)],
        )
        for why, number, reason in (
            ("17 digits", HMT_PERMITS[0][:17], "HMT_PERMIT_BAD_LENGTH"),
            ("a letter", "81000019900307123a", "HMT_PERMIT_BAD_CHARACTER"),
            ("a citizen's county code", CITIZEN, "HMT_PERMIT_UNKNOWN_REGION"),
            (
                "Taiwan's GB/T 2260 code",
                with_check("71000019900307123"),
                "HMT_PERMIT_UNKNOWN_REGION",
            ),
            ("13th month", with_check("81000019901307123"), "HMT_PERMIT_BAD_DATE"),
            ("check digit (id type 3)", "810000199003071230", "HMT_PERMIT_CHECK_MISMATCH"),
        )
    ),
    # 外国人永久居留身份证, each invalid way
    *(
        (
            f"permanent residence: {why}",
            applicant(pb.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE, number),
            [("applicant.id_number", reason)],
        )
        for why, number, reason in (
            ("16 characters", FOREIGN_2023[:16], "FOREIGN_PR_ID_BAD_LENGTH"),
            ("a letter in the 2023 form", "9331001990030712A2", "FOREIGN_PR_ID_BAD_CHARACTER"),
            ("a citizen's first digit", CITIZEN, "FOREIGN_PR_ID_BAD_FIRST_DIGIT"),
            ("check digit", "933100199003071230", "FOREIGN_PR_ID_CHECK_MISMATCH"),
            ("2017 form in lower case", "usa330619900307", "FOREIGN_PR_ID_BAD_CHARACTER"),
            ("2017 form with a letter late", "USA33061990030X", "FOREIGN_PR_ID_BAD_CHARACTER"),
        )
    ),
    (
        "name missing",
        setting("applicant.display_name", ""),
        [("applicant.display_name", "MISSING")],
    ),
    (
        "name blank",
        setting("applicant.display_name", "   "),
        [("applicant.display_name", "MISSING")],
    ),
    ("name at its bound", setting("applicant.display_name", "名" * 100), []),
    (
        "name over its bound",
        setting("applicant.display_name", "名" * 101),
        [("applicant.display_name", "TOO_LONG")],
    ),
    (
        "name not printable",
        setting("applicant.display_name", "张\t三"),
        [("applicant.display_name", "MALFORMED")],
    ),
    # -- form
    ("no form", form(), []),
    ("100 fields", form(*((f"k{i}", "v") for i in range(100))), []),
    ("101 fields", form(*((f"k{i}", "v") for i in range(101))), [("form_fields", "TOO_MANY")]),
    ("key missing", form(("", "v")), [("form_fields[0].key", "MISSING")]),
    ("key not of its pattern", form(("Bad-Key", "v")), [("form_fields[0].key", "BAD_KEY")]),
    ("key from a digit", form(("1key", "v")), [("form_fields[0].key", "BAD_KEY")]),
    ("key at its bound", form(("k" * 64, "v")), []),
    ("key over its bound", form(("k" * 65, "v")), [("form_fields[0].key", "TOO_LONG")]),
    ("key twice", form(("a", "1"), ("b", "2"), ("a", "3")), [("form_fields[2].key", "DUPLICATE")]),
    (
        "a bad key before good ones",
        form(("K", "1"), ("b", "2")),
        [("form_fields[0].key", "BAD_KEY")],
    ),
    ("empty value", form(("a", "")), []),
    ("value with line breaks", form(("a", "第一行\n第二行")), []),
    ("value at its bound", form(("a", "v" * 4096)), []),
    ("value over its bound", form(("a", "v" * 4097)), [("form_fields[0].value", "TOO_LONG")]),
    # -- materials
    ("no materials", materials(), []),
    (
        "50 materials",
        materials(*(pb.Material(material_id=f"M{i}", paper=pb.PaperMaterial()) for i in range(50))),
        [],
    ),
    (
        "51 materials",
        materials(*(pb.Material(material_id=f"M{i}", paper=pb.PaperMaterial()) for i in range(51))),
        [("materials", "TOO_MANY")],
    ),
    (
        "material id missing",
        materials(pb.Material(paper=pb.PaperMaterial())),
        [("materials[0].material_id", "MISSING")],
    ),
    (
        "material id not of its pattern",
        materials(pb.Material(material_id="M 1", paper=pb.PaperMaterial())),
        [("materials[0].material_id", "BAD_ID")],
    ),
    (
        "material id over its bound",
        materials(pb.Material(material_id="M" * 17, paper=pb.PaperMaterial())),
        [("materials[0].material_id", "TOO_LONG")],
    ),
    (
        "material twice",
        materials(token("a.b.c"), paper("表")),
        [("materials[1].material_id", "DUPLICATE")],
    ),
    (
        "material without a source",
        materials(pb.Material(material_id="M01")),
        [("materials[0].source", "MISSING")],
    ),
    ("empty token", materials(token("")), [("materials[0].license_token", "TOKEN_EMPTY")]),
    ("token at the limit", materials(token("t" * MAX_TOKEN_BYTES)), []),
    (
        "token one byte past the limit",
        materials(token("t" * (MAX_TOKEN_BYTES + 1))),
        [("materials[0].license_token", "TOKEN_TOO_LARGE")],
    ),
    (
        "token within the limit in characters, past it in bytes",
        materials(token("t" * (MAX_TOKEN_BYTES - 2) + "名")),
        [("materials[0].license_token", "TOKEN_TOO_LARGE")],
    ),
    ("paper, nothing said", materials(paper()), []),
    ("description at its bound", materials(paper("表" * 200)), []),
    ("description with line breaks", materials(paper("第一页\n第二页")), []),
    (
        "description over its bound",
        materials(paper("表" * 201)),
        [("materials[0].paper.description", "TOO_LONG")],
    ),
    ("digest", materials(paper(file_sha256=DIGEST)), []),
    (
        "digest in upper case",
        materials(paper(file_sha256=DIGEST.upper())),
        [("materials[0].paper.file_sha256", "BAD_DIGEST")],
    ),
    (
        "digest one short",
        materials(paper(file_sha256=DIGEST[:63])),
        [("materials[0].paper.file_sha256", "BAD_DIGEST")],
    ),
    (
        "digest not hex",
        materials(paper(file_sha256="g" * 64)),
        [("materials[0].paper.file_sha256", "BAD_DIGEST")],
    ),
    (
        "digest over its bound",
        materials(paper(file_sha256=DIGEST + "0")),
        [("materials[0].paper.file_sha256", "TOO_LONG")],
    ),
]


def test_the_valid_submission_is_valid() -> None:
    assert validate_submission(valid(), PROVINCES) == []


@pytest.mark.parametrize(("change", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_branch(change: Change, expected: list[tuple[str, str]]) -> None:
    request = valid()
    change(request)
    assert [(v.field, v.reason) for v in validate_submission(request, PROVINCES)] == expected


DESCRIBED: list[tuple[str, Change, str, str]] = [
    ("request_id", setting("request_id", "req 1"), "MALFORMED", "1 to 64 of [A-Za-z0-9._:-]"),
    (
        "target_region",
        setting("target_region", "440000"),
        "SAME_REGION",
        "must differ from origin_region",
    ),
    ("applicant", lambda r: r.ClearField("applicant"), "MISSING", "required"),
    ("applicant.display_name", setting("applicant.display_name", " "), "MISSING", "required"),
    ("applicant.display_name", setting("applicant.display_name", ""), "MISSING", "required"),
    (
        "form_fields",
        form(*((f"k{i}", "v") for i in range(101))),
        "TOO_MANY",
        "at most 100 fields",
    ),
    ("form_fields[0].key", form(("K", "v")), "BAD_KEY", "must match [a-z][a-z0-9_]{0,63}"),
    ("form_fields[1].key", form(("a", "1"), ("a", "2")), "DUPLICATE", "duplicate key"),
    (
        "materials",
        materials(*(pb.Material(material_id=f"M{i}", paper=pb.PaperMaterial()) for i in range(51))),
        "TOO_MANY",
        "at most 50 materials",
    ),
    (
        "materials[0].material_id",
        materials(pb.Material(material_id="M 1", paper=pb.PaperMaterial())),
        "BAD_ID",
        "1 to 16 of [A-Za-z0-9_-]",
    ),
    (
        "materials[1].material_id",
        materials(token("a.b.c"), paper()),
        "DUPLICATE",
        "duplicate material",
    ),
    (
        "materials[0].source",
        materials(pb.Material(material_id="M01")),
        "MISSING",
        "one of license_token or paper is required",
    ),
    (
        "materials[0].paper.file_sha256",
        materials(paper(file_sha256="g" * 64)),
        "BAD_DIGEST",
        "64 lowercase hex characters",
    ),
]


@pytest.mark.parametrize(
    ("field", "change", "reason", "description"), DESCRIBED, ids=[d[0] for d in DESCRIBED]
)
def test_the_description_a_client_reads(
    field: str, change: Change, reason: str, description: str
) -> None:
    """The violations this module words itself; the others are `catalog.fields`' words."""
    request = valid()
    change(request)
    assert [
        (v.field, v.reason, v.description) for v in validate_submission(request, PROVINCES)
    ] == [(field, reason, description)]


def test_every_problem_is_reported_at_once_in_field_order() -> None:
    request = pb.SubmitApplicationRequest(
        request_id="bad id",
        origin_region="44",
        target_region="440305",
        national_matter_code="1",
        cross_region_mode=7,  # type: ignore[arg-type]
        applicant=pb.Applicant(id_type=99),  # type: ignore[arg-type]
        form_fields=[pb.FormField(key="K")],
        materials=[pb.Material(material_id="M01")],
    )
    assert [(v.field, v.reason) for v in validate_submission(request, PROVINCES)] == [
        ("request_id", "MALFORMED"),
        ("origin_region", "BAD_REGION_CODE"),
        ("target_region", "NOT_A_PROVINCE"),
        ("local_matter_code", "MISSING"),
        ("national_matter_code", "BASIC_CODE_BAD_LENGTH"),
        ("cross_region_mode", "UNKNOWN"),
        ("applicant.id_type", "UNKNOWN"),
        ("applicant.id_number", "MISSING"),
        ("applicant.display_name", "MISSING"),
        ("form_fields[0].key", "BAD_KEY"),
        ("materials[0].source", "MISSING"),
    ]


@pytest.mark.parametrize(
    ("id_type", "number"),
    [
        (pb.ID_TYPE_CITIZEN_ID, "110105199003071238"),
        (pb.ID_TYPE_USCC, "110105199003071238"),
        (pb.ID_TYPE_HMT_RESIDENCE_PERMIT, "810000199003071230"),
        (pb.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE, "933100199003071230"),
        (pb.ID_TYPE_FOREIGN_PERMANENT_RESIDENCE, "usa330619900307"),
    ],
)
def test_no_violation_repeats_the_id_number_or_the_name(id_type: int, number: str) -> None:
    request = valid()
    applicant(id_type, number)(request)
    request.applicant.display_name = "李四\n"
    violations = validate_submission(request, PROVINCES)
    assert {v.field for v in violations} == {"applicant.id_number", "applicant.display_name"}
    for v in violations:
        for start in range(len(number) - 3):
            assert number[start : start + 4] not in v.description
        assert "李四" not in v.description


# -- a bundle's shape ---------------------------------------------------------------------------


def bundle_request(**overrides: object) -> bundle_pb2.SubmitBundleRequest:
    values: dict[str, object] = {
        "request_id": "b-1",
        "origin_region": "110000",
        "theme_code": "YJS0008",
        "roles": [bundle_pb2.RoleBinding(role="insured", region_code="440000")],
        "applicant": pb.Applicant(
            id_type=pb.ID_TYPE_CITIZEN_ID, id_number="110105199003071239", display_name="张三"
        ),
        "consent": bundle_pb2.Consent(
            flows=[bundle_pb2.FlowConsent(member_id="pension", material_id="M04")],
            consent_time=Timestamp(seconds=1_780_000_000),
            channel="app",
        ),
    }
    values.update(overrides)
    return bundle_pb2.SubmitBundleRequest(**values)  # type: ignore[arg-type]


def roles(*pairs: tuple[str, str]) -> list[bundle_pb2.RoleBinding]:
    return [bundle_pb2.RoleBinding(role=role, region_code=region) for role, region in pairs]


def consent(*flows: tuple[str, str]) -> bundle_pb2.Consent:
    return bundle_pb2.Consent(
        flows=[bundle_pb2.FlowConsent(member_id=m, material_id=d) for m, d in flows],
        consent_time=Timestamp(seconds=1_780_000_000),
        channel="app",
    )


NOT_A_PROVINCE = "a province-level code (XX0000), not a prefecture or county"
A_ROLE = "a role such as transfer_out"
A_MATERIAL_ID = "1 to 16 of [A-Za-z0-9_-]"
ROLE_NAMES = [f"role_{chr(ord('a') + i)}" for i in range(17)]

BUNDLE_SHAPES: list[tuple[str, dict[str, object], list[tuple[str, str, str]]]] = [
    ("valid", {}, []),
    ("no request id", {"request_id": ""}, [("request_id", "MISSING", "required")]),
    (
        "a request id with a space",
        {"request_id": "b 1"},
        [("request_id", "MALFORMED", "1 to 64 of [A-Za-z0-9._:-]")],
    ),
    (
        "origin a county",
        {"origin_region": "110105"},
        [("origin_region", "NOT_A_PROVINCE", NOT_A_PROVINCE)],
    ),
    ("no theme code", {"theme_code": ""}, [("theme_code", "MISSING", "required")]),
    (
        "bad theme code",
        {"theme_code": "yjs1"},
        [("theme_code", "BAD_THEME_CODE", "4 to 32 of [A-Z0-9]")],
    ),
    ("theme code at its bound", {"theme_code": "Y" * 32}, []),
    (
        "theme code over its bound",
        {"theme_code": "Y" * 33},
        [("theme_code", "TOO_LONG", "at most 32 characters")],
    ),
    ("no roles", {"roles": []}, [("roles", "MISSING", "the province of every role of the theme")]),
    ("16 roles", {"roles": roles(*((r, "440000") for r in ROLE_NAMES[:16]))}, []),
    (
        "17 roles",
        {"roles": roles(*((r, "440000") for r in ROLE_NAMES))},
        [("roles", "TOO_MANY", "at most 16 roles")],
    ),
    (
        "a role twice",
        {"roles": roles(("insured", "440000"), ("insured", "510000"))},
        [("roles[1].role", "DUPLICATE", "each role once")],
    ),
    (
        "a role missing",
        {"roles": roles(("", "440000"))},
        [("roles[0].role", "MISSING", "required")],
    ),
    (
        "a role not of its pattern",
        {"roles": roles(("Insured", "440000"))},
        [("roles[0].role", "MALFORMED", A_ROLE)],
    ),
    ("a role at its bound", {"roles": roles(("r" * 32, "440000"))}, []),
    (
        "a role over its bound",
        {"roles": roles(("r" * 33, "440000"))},
        [("roles[0].role", "TOO_LONG", "at most 32 characters")],
    ),
    (
        "a bad role before good ones",
        {"roles": roles(("X", "440000"), ("insured", "510000"))},
        [("roles[0].role", "MALFORMED", A_ROLE)],
    ),
    (
        "a county for a role",
        {"roles": roles(("insured", "440305"))},
        [("roles[0].region_code", "NOT_A_PROVINCE", NOT_A_PROVINCE)],
    ),
    ("no consent", {"consent": None}, [("consent", "MISSING", "the applicant's one consent")]),
    (
        "consent without time or channel",
        {"consent": bundle_pb2.Consent()},
        [
            ("consent.consent_time", "MISSING", "required"),
            ("consent.channel", "MISSING", "required"),
        ],
    ),
    (
        "a channel not of its pattern",
        {"consent": bundle_pb2.Consent(consent_time=Timestamp(seconds=1), channel="App")},
        [("consent.channel", "MALFORMED", "1 to 32 of [a-z0-9_-]")],
    ),
    (
        "a channel over its bound",
        {"consent": bundle_pb2.Consent(consent_time=Timestamp(seconds=1), channel="a" * 33)},
        [("consent.channel", "TOO_LONG", "at most 32 characters")],
    ),
    ("32 flows", {"consent": consent(*((f"m{i}", "M1") for i in range(32)))}, []),
    (
        "33 flows",
        {"consent": consent(*((f"m{i}", "M1") for i in range(33)))},
        [("consent.flows", "TOO_MANY", "at most 32 flows")],
    ),
    ("two flows of one member", {"consent": consent(("a", "M1"), ("a", "M2"))}, []),
    ("two flows of one material", {"consent": consent(("a", "M1"), ("b", "M1"))}, []),
    (
        "a flow twice",
        {"consent": consent(("a", "M1"), ("a", "M1"))},
        [("consent.flows[1]", "DUPLICATE", "each flow once")],
    ),
    (
        "a malformed flow twice: no DUPLICATE on top",
        {"consent": consent(("A", "M1"), ("A", "M1"))},
        [
            ("consent.flows[0].member_id", "MALFORMED", "a member id"),
            ("consent.flows[1].member_id", "MALFORMED", "a member id"),
        ],
    ),
    (
        "a flow without a member",
        {"consent": consent(("", "M1"))},
        [("consent.flows[0].member_id", "MISSING", "required")],
    ),
    (
        "a member id over its bound",
        {"consent": consent(("m" * 33, "M1"))},
        [("consent.flows[0].member_id", "TOO_LONG", "at most 32 characters")],
    ),
    (
        "a flow without a material",
        {"consent": consent(("a", ""))},
        [("consent.flows[0].material_id", "MISSING", "required")],
    ),
    (
        "a material id not of its pattern",
        {"consent": consent(("a", "M 1"))},
        [("consent.flows[0].material_id", "MALFORMED", A_MATERIAL_ID)],
    ),
    (
        "a material id over its bound",
        {"consent": consent(("a", "M" * 17))},
        [("consent.flows[0].material_id", "TOO_LONG", "at most 16 characters")],
    ),
    (
        "a bad flow before good ones",
        {"consent": consent(("a", "M 1"), ("b", "M2"))},
        [("consent.flows[0].material_id", "MALFORMED", A_MATERIAL_ID)],
    ),
    ("no applicant", {"applicant": None}, [("applicant", "MISSING", "required")]),
    (
        "form and materials judged as a submission's",
        {
            "form_fields": [pb.FormField(key="K", value="v")],
            "materials": [pb.Material(material_id="M01")],
        },
        [
            ("form_fields[0].key", "BAD_KEY", "must match [a-z][a-z0-9_]{0,63}"),
            ("materials[0].source", "MISSING", "one of license_token or paper is required"),
        ],
    ),
    (
        "every problem at once, in field order",
        {
            "request_id": "",
            "origin_region": "11",
            "theme_code": "",
            "roles": [],
            "applicant": pb.Applicant(),
            "form_fields": [pb.FormField(key="K")],
            "materials": [pb.Material(material_id="M01")],
            "consent": bundle_pb2.Consent(),
        },
        [
            ("request_id", "MISSING", "required"),
            ("origin_region", "BAD_REGION_CODE", "a GB/T 2260 code of 6 ASCII digits"),
            ("theme_code", "MISSING", "required"),
            ("roles", "MISSING", "the province of every role of the theme"),
            ("applicant.id_type", "MISSING", "required"),
            ("applicant.id_number", "MISSING", "required"),
            ("applicant.display_name", "MISSING", "required"),
            ("form_fields[0].key", "BAD_KEY", "must match [a-z][a-z0-9_]{0,63}"),
            ("materials[0].source", "MISSING", "one of license_token or paper is required"),
            ("consent.consent_time", "MISSING", "required"),
            ("consent.channel", "MISSING", "required"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [(o, e) for _, o, e in BUNDLE_SHAPES],
    ids=[name for name, _, _ in BUNDLE_SHAPES],
)
def test_bundle_shape(overrides: dict[str, object], expected: list[tuple[str, str, str]]) -> None:
    request = bundle_request(**{k: v for k, v in overrides.items() if v is not None})
    for name, value in overrides.items():
        if value is None:
            request.ClearField(name)  # type: ignore[arg-type]
    found = validate_bundle(request, PROVINCES)
    assert [(v.field, v.reason, v.description) for v in found] == expected
