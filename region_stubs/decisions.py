"""How a province decides its cases, per national matter: the rules, read from the command
line (`--decide`) or the admin API (SetDecisions).

A rule is written `MATTER=ACTION`: MATTER is a 12-digit national basic code or `*` (every
matter no other rule names), ACTION one of

    manual                       wait for an operator's DecideCase (the default)
    complete[:DELAY]             ACCEPTED at once, COMPLETED DELAY later (default 0)
    reject[:DELAY][:REASON]      REJECTED DELAY later (default 0), with REASON

DELAY is a number of seconds or milliseconds with its unit, `2s`, `1.5s`, `500ms`.

Invariants:
- `Decisions` is valid once built: each matter named at most once, codes well-formed, delays
  within [0, `MAX_DELAY`], a reason only with REJECT and at most `MAX_REASON` characters. Every
  way in (text, proto) reports every violation at once, with the field it came from.
- `for_matter` is total: a matter no rule names, and no `*`, is MANUAL.
- Pure: parsing and lookup touch nothing outside their arguments.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf import duration_pb2

from gateway.catalog import fields
from gateway.errors import FieldViolation
from gateway.licenses.trust import PROVINCE_CODES
from region_stubs.admin.v1 import admin_pb2

EVERY_MATTER = "*"
MAX_DELAY = 3600.0
"""The longest delay a rule may set, in seconds."""
MAX_REASON = 500
MAX_RULES = 200

_DELAY = re.compile(r"(\d+(?:\.\d+)?)(ms|s)")


class Action(enum.Enum):
    """What the province does with a case of a matter."""

    MANUAL = "manual"
    """Wait for an operator (DecideCase)."""
    COMPLETE = "complete"
    """Accept at once, complete after the delay."""
    REJECT = "reject"
    """Reject after the delay."""


_TO_PROTO = {
    Action.MANUAL: admin_pb2.DECISION_ACTION_MANUAL,
    Action.COMPLETE: admin_pb2.DECISION_ACTION_COMPLETE,
    Action.REJECT: admin_pb2.DECISION_ACTION_REJECT,
}
_FROM_PROTO = {number: action for action, number in _TO_PROTO.items()}


class DecisionsInvalid(ValueError):
    """Rules that break an invariant; carries one violation per problem."""

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = tuple(violations)


@dataclass(frozen=True, slots=True)
class Decision:
    """How one matter's cases are decided."""

    action: Action = Action.MANUAL
    """What the province does."""
    delay: float = 0.0
    """Seconds from delivery to the decision (COMPLETE: to completion)."""
    reason: str = ""
    """The reason reported with REJECTED."""


MANUAL = Decision()


@dataclass(frozen=True, slots=True)
class Decisions:
    """The rules in force: matter code (or `*`) → decision."""

    rules: Mapping[str, Decision] = field(default_factory=dict)
    """The rules; build through `parse` or `from_proto`, which check them."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", MappingProxyType(dict(sorted(self.rules.items()))))

    def for_matter(self, national_code: str) -> Decision:
        """The decision for a matter: its own rule, else `*`'s, else MANUAL."""
        return self.rules.get(national_code) or self.rules.get(EVERY_MATTER) or MANUAL

    @classmethod
    def parse(cls, texts: Iterable[str]) -> Decisions:
        """Rules from their text form (`MATTER=ACTION`); raises `DecisionsInvalid`."""
        rules: list[tuple[str, str, Decision | None]] = []
        violations: list[FieldViolation] = []
        for i, text in enumerate(texts):
            place = f"decide[{i}]"
            matter, separator, action = text.partition("=")
            if not separator:
                violations.append(
                    FieldViolation(place, "MATTER=ACTION, e.g. *=complete:1s", "MALFORMED")
                )
                continue
            decision, problems = _parse_action(action.strip(), place)
            violations.extend(problems)
            rules.append((place, matter.strip(), decision))
        return cls._checked(rules, violations, "decide")

    @classmethod
    def from_proto(cls, messages: Sequence[admin_pb2.DecisionRule]) -> Decisions:
        """Rules from SetDecisionsRequest.rules; raises `DecisionsInvalid`."""
        rules: list[tuple[str, str, Decision | None]] = []
        violations: list[FieldViolation] = []
        for i, message in enumerate(messages):
            place = f"rules[{i}]"
            action = _FROM_PROTO.get(message.action)
            if action is None:
                violations.append(
                    FieldViolation(
                        f"{place}.action", "one of MANUAL, COMPLETE, REJECT", "UNSPECIFIED"
                    )
                )
            delay = message.delay.ToTimedelta().total_seconds()
            problems = _decision_problems(action, delay, message.reason, place)
            violations.extend(problems)
            decision = (
                None if action is None or problems else Decision(action, delay, message.reason)
            )
            rules.append((f"{place}.matter_code", message.matter_code, decision))
        return cls._checked(rules, violations, "rules")

    @classmethod
    def _checked(
        cls,
        rules: Sequence[tuple[str, str, Decision | None]],
        violations: list[FieldViolation],
        field_name: str,
    ) -> Decisions:
        """`rules`: (where the matter code was given, the code, its decision or None when
        that was invalid)."""
        if len(rules) > MAX_RULES:
            violations.append(FieldViolation(field_name, f"at most {MAX_RULES} rules", "TOO_MANY"))
        seen: set[str] = set()
        for place, matter, _ in rules:
            if matter != EVERY_MATTER:
                problem = fields.matter_code(matter, place, PROVINCE_CODES, required=True)
                if problem is not None:
                    violations.append(problem)
            if matter in seen:
                violations.append(FieldViolation(place, "each matter at most once", "DUPLICATE"))
            seen.add(matter)
        if violations:
            raise DecisionsInvalid(violations)
        return cls({matter: decision for _, matter, decision in rules if decision is not None})

    def to_proto(self) -> list[admin_pb2.DecisionRule]:
        """The rules as SetDecisionsResponse.rules, in matter code order (`*` first)."""
        messages = []
        for matter, decision in self.rules.items():
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(round(decision.delay * 1e9))
            messages.append(
                admin_pb2.DecisionRule(
                    matter_code=matter,
                    action=_TO_PROTO[decision.action],
                    delay=delay,
                    reason=decision.reason,
                )
            )
        return messages


def _parse_action(text: str, place: str) -> tuple[Decision | None, list[FieldViolation]]:
    name, _, rest = text.partition(":")
    try:
        action = Action(name)
    except ValueError:
        return None, [FieldViolation(place, "manual, complete[:DELAY] or reject[...]", "UNKNOWN")]
    delay, reason = 0.0, ""
    if action is Action.MANUAL and rest:
        return None, [FieldViolation(place, "manual takes no delay or reason", "MALFORMED")]
    if action is Action.COMPLETE and rest:
        parsed = _delay(rest)
        if parsed is None:
            return None, [FieldViolation(place, "complete:DELAY, e.g. 2s or 500ms", "BAD_DELAY")]
        delay = parsed
    if action is Action.REJECT and rest:
        head, _, tail = rest.partition(":")
        parsed = _delay(head)
        delay, reason = (0.0, rest) if parsed is None else (parsed, tail)
    problems = _decision_problems(action, delay, reason, place)
    return (None if problems else Decision(action, delay, reason)), problems


def _delay(text: str) -> float | None:
    match = _DELAY.fullmatch(text)
    if match is None:
        return None
    value = float(match[1])
    return value / 1000 if match[2] == "ms" else value


def _decision_problems(
    action: Action | None, delay: float, reason: str, place: str
) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    if not (math.isfinite(delay) and 0 <= delay <= MAX_DELAY):
        problems.append(
            FieldViolation(f"{place}.delay", f"within [0, {MAX_DELAY:g}] seconds", "OUT_OF_RANGE")
        )
    if reason and action is not Action.REJECT:
        problems.append(FieldViolation(f"{place}.reason", "only with REJECT", "NOT_ALLOWED"))
    problem = fields.text(reason, f"{place}.reason", MAX_REASON, printable=False)
    if problem is not None:
        problems.append(problem)
    return problems
