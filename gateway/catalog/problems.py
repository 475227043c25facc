"""The problems of a document being read: each a field violation with its JSON path.

A reader adds every problem it finds and carries on, so that one pass reports them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.catalog.model import TIME_LIMIT_UNITS, TimeLimit
from gateway.errors import FieldViolation

MAX_NAME_LENGTH = 200


T = TypeVar("T")


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """A parse result: the value when there were no violations, and every violation."""

    value: T | None
    violations: tuple[FieldViolation, ...]


class Problems:
    """The violations found so far; `string` reads a string field and reports its faults."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, reason: str, description: str) -> None:
        self.items.append(FieldViolation(field=field, description=description, reason=reason))

    def string(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = True,
        max_length: int = MAX_NAME_LENGTH,
    ) -> str:
        value = obj.get(key)
        if value is None or value == "":
            if required:
                self.add(f"{path}{key}", "MISSING", f"{key} is required")
            return ""
        if not isinstance(value, str):
            self.add(f"{path}{key}", "WRONG_TYPE", f"{key} must be a string")
            return ""
        if len(value) > max_length:
            self.add(f"{path}{key}", "TOO_LONG", f"{key} is longer than {max_length} characters")
            return ""  # reported once: later checks of this value would report it again
        return value


def time_limit(p: Problems, value: object, path: str) -> TimeLimit:
    if not isinstance(value, dict):
        p.add(path, "MISSING", f"{path} must be an object with value and unit")
        return TimeLimit(0, "WORKING_DAYS")
    days = value.get("value")
    unit = value.get("unit")
    if not isinstance(days, int) or isinstance(days, bool) or days < 0 or days > 3650:
        p.add(f"{path}.value", "BAD_TIME_LIMIT", "value must be a whole number of days, 0 to 3650")
        days = 0
    if unit not in TIME_LIMIT_UNITS:
        p.add(
            f"{path}.unit", "BAD_TIME_LIMIT", f"unit must be one of {', '.join(TIME_LIMIT_UNITS)}"
        )
        unit = "WORKING_DAYS"
    return TimeLimit(days, str(unit))
