"""What a conformance run reports: one result per case, as lines for people and JUnit XML for CI.

Invariants:
- A case is PASSED, FAILED or SKIPPED; a run passes when no case failed. A case is skipped only
  when the run was not given what it needs (certificates, the gateway side) or a case it relies
  on failed, and says which.
- Every result says what the kit sent and what came back; a line never spans two lines.
- Nothing personal travels in a result: the kit's applicants are made up, and their id numbers
  are never shown anyway.
"""

from __future__ import annotations

import enum
import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


class Outcome(enum.Enum):
    """How a case ended; the value is how a line shows it."""

    PASSED = "PASS"
    FAILED = "FAIL"
    SKIPPED = "SKIP"


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One case of one run."""

    name: str
    """The case's id, e.g. `delivery.replay`."""
    rule: str
    """The rule of the contract it checks, in one sentence."""
    outcome: Outcome
    """Passed, failed or skipped."""
    sent: str = ""
    """What the kit sent."""
    got: str = ""
    """What came back."""
    problem: str = ""
    """Why it failed or was skipped; empty when it passed."""
    seconds: float = 0.0
    """How long it ran."""


def _flat(text: str) -> str:
    return " ".join(text.split())


def line(result: CaseResult) -> str:
    """The one line a person reads for a case."""
    parts = [f"{result.outcome.value} {result.name}"]
    if result.outcome is Outcome.SKIPPED:
        return f"{parts[0]}: {_flat(result.problem)}"
    if result.sent:
        parts.append(f"sent: {_flat(result.sent)}")
    if result.got:
        parts.append(f"got: {_flat(result.got)}")
    if result.problem:
        parts.append(f"wrong: {_flat(result.problem)}")
    return " | ".join(parts)


def counts(results: Sequence[CaseResult]) -> dict[Outcome, int]:
    """How many cases ended each way."""
    return {outcome: sum(r.outcome is outcome for r in results) for outcome in Outcome}


def passed(results: Sequence[CaseResult]) -> bool:
    """True when no case failed."""
    return counts(results)[Outcome.FAILED] == 0


def summary(results: Sequence[CaseResult], *, region: str, target: str, seconds: float) -> str:
    """The run's last line."""
    n = counts(results)
    verdict = (
        "does not conform"
        if not passed(results)
        else "conforms in the cases run"
        if n[Outcome.SKIPPED]
        else "conforms"
    )
    return (
        f"region {region} at {target} {verdict}: {n[Outcome.PASSED]} passed, "
        f"{n[Outcome.FAILED]} failed, {n[Outcome.SKIPPED]} skipped in {seconds:.1f} s"
    )


def write_junit(
    path: Path,
    results: Sequence[CaseResult],
    *,
    region: str,
    target: str,
    seconds: float,
    started: datetime,
) -> None:
    """Writes the run as JUnit XML (one testsuite, one testcase per case) to `path`."""
    n = counts(results)
    totals = {
        "tests": str(len(results)),
        "failures": str(n[Outcome.FAILED]),
        "errors": "0",
        "skipped": str(n[Outcome.SKIPPED]),
        "time": f"{seconds:.3f}",
    }
    root = ET.Element("testsuites", {"name": "tongban conformance", **totals})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": f"RegionService of region {region}",
            **totals,
            "timestamp": started.isoformat(timespec="seconds"),
            "hostname": socket.gethostname(),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("region", region), ("target", target)):
        ET.SubElement(properties, "property", {"name": name, "value": value})
    for result in results:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": f"conformance.region_{region}",
                "name": result.name,
                "time": f"{result.seconds:.3f}",
            },
        )
        story = f"rule: {result.rule}\nsent: {result.sent}\ngot: {result.got}"
        if result.outcome is Outcome.FAILED:
            failure = ET.SubElement(
                case, "failure", {"message": result.problem, "type": "NonConformance"}
            )
            failure.text = f"{story}\nwrong: {result.problem}"
        elif result.outcome is Outcome.SKIPPED:
            ET.SubElement(case, "skipped", {"message": result.problem})
        ET.SubElement(case, "system-out").text = story
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
