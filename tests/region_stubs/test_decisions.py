"""Decision rules: their text form, their admin form, and which rule a matter gets."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2

from region_stubs.admin.v1 import admin_pb2
from region_stubs.decisions import MANUAL, Action, Decision, Decisions, DecisionsInvalid

MATTER = "002031021000"
OTHER = "000117113000"


@pytest.mark.parametrize(
    ("text", "decision"),
    [
        (f"{MATTER}=manual", Decision(Action.MANUAL)),
        (f"{MATTER}=complete", Decision(Action.COMPLETE)),
        (f"{MATTER}=complete:2s", Decision(Action.COMPLETE, 2.0)),
        (f"{MATTER}=complete:1.5s", Decision(Action.COMPLETE, 1.5)),
        (f"{MATTER}=complete:250ms", Decision(Action.COMPLETE, 0.25)),
        (f"{MATTER}=reject", Decision(Action.REJECT)),
        (
            f"{MATTER}=reject:MATERIALS_INCOMPLETE",
            Decision(Action.REJECT, 0, "MATERIALS_INCOMPLETE"),
        ),
        (f"{MATTER}=reject:3s", Decision(Action.REJECT, 3.0)),
        (
            f"{MATTER}=reject:3s:材料不全: 缺少申请表",
            Decision(Action.REJECT, 3.0, "材料不全: 缺少申请表"),
        ),
        (f" {MATTER} = complete:1s ", Decision(Action.COMPLETE, 1.0)),
    ],
)
def test_a_rule_reads_as_documented(text: str, decision: Decision) -> None:
    assert Decisions.parse([text]).rules == {MATTER: decision}


@pytest.mark.parametrize(
    ("text", "violations"),
    [
        ("complete", {"decide[0]": "MALFORMED"}),
        (f"{MATTER}=finish", {"decide[0]": "UNKNOWN"}),
        (f"{MATTER}=complete:soon", {"decide[0]": "BAD_DELAY"}),
        (f"{MATTER}=complete:2", {"decide[0]": "BAD_DELAY"}),
        (f"{MATTER}=complete:-1s", {"decide[0]": "BAD_DELAY"}),
        (f"{MATTER}=complete:3601s", {"decide[0].delay": "OUT_OF_RANGE"}),
        (f"{MATTER}=manual:1s", {"decide[0]": "MALFORMED"}),
        (f"{MATTER}=reject:1s:" + "x" * 501, {"decide[0].reason": "TOO_LONG"}),
        ("0020310=complete", {"decide[0]": "BASIC_CODE_BAD_LENGTH"}),
        ("=complete", {"decide[0]": "MISSING"}),
    ],
)
def test_a_bad_rule_is_named_with_its_reason(text: str, violations: dict[str, str]) -> None:
    with pytest.raises(DecisionsInvalid) as caught:
        Decisions.parse([text])
    assert {v.field: v.reason for v in caught.value.violations} == violations


def test_every_bad_rule_is_reported_at_once_and_a_matter_only_once() -> None:
    with pytest.raises(DecisionsInvalid) as caught:
        Decisions.parse([f"{MATTER}=complete", "*=complete:x", f"{MATTER}=reject", "*=manual"])
    assert [(v.field, v.reason) for v in caught.value.violations] == [
        ("decide[1]", "BAD_DELAY"),
        ("decide[2]", "DUPLICATE"),
        ("decide[3]", "DUPLICATE"),
    ]


def test_a_matter_gets_its_own_rule_else_the_rule_for_every_matter_else_manual() -> None:
    decisions = Decisions.parse([f"{MATTER}=reject:NO", "*=complete:1s"])
    assert decisions.for_matter(MATTER) == Decision(Action.REJECT, 0, "NO")
    assert decisions.for_matter(OTHER) == Decision(Action.COMPLETE, 1.0)
    assert decisions.for_matter("") == Decision(Action.COMPLETE, 1.0)
    assert Decisions().for_matter(MATTER) == MANUAL
    assert Decisions.parse([f"{MATTER}=complete"]).for_matter(OTHER) == MANUAL


def test_the_admin_form_round_trips_in_matter_order() -> None:
    decisions = Decisions.parse(
        [f"{OTHER}=reject:250ms:材料不全", "*=complete:1.5s", f"{MATTER}=manual"]
    )
    messages = decisions.to_proto()
    assert [m.matter_code for m in messages] == ["*", OTHER, MATTER]
    assert messages[0].action == admin_pb2.DECISION_ACTION_COMPLETE
    assert messages[0].delay == duration_pb2.Duration(seconds=1, nanos=500_000_000)
    assert (messages[1].reason, messages[1].delay.ToMilliseconds()) == ("材料不全", 250)
    assert Decisions.from_proto(messages) == decisions


def test_the_admin_form_names_its_fields() -> None:
    with pytest.raises(DecisionsInvalid) as caught:
        Decisions.from_proto(
            [
                admin_pb2.DecisionRule(matter_code=MATTER, action=7),  # type: ignore[arg-type]
                admin_pb2.DecisionRule(
                    matter_code=OTHER,
                    action=admin_pb2.DECISION_ACTION_REJECT,
                    delay=duration_pb2.Duration(seconds=-1),
                ),
                admin_pb2.DecisionRule(action=admin_pb2.DECISION_ACTION_MANUAL),
            ]
        )
    assert {v.field: v.reason for v in caught.value.violations} == {
        "rules[0].action": "UNSPECIFIED",
        "rules[1].delay": "OUT_OF_RANGE",
        "rules[2].matter_code": "MISSING",
    }


def test_no_more_than_two_hundred_rules() -> None:
    codes = [f"0020310{n:05d}" for n in range(201)]
    with pytest.raises(DecisionsInvalid) as caught:
        Decisions.parse(f"{code}=complete" for code in codes)
    assert [v.reason for v in caught.value.violations] == ["TOO_MANY"]
