"""Mutation testing of the pure decision modules, each against its mirrored tests alone.

    python -m bench.mutation [--install] [MODULE ...]      (`make mutation`: --install, all)

For each target, mutmut (pinned: `MUTMUT_VERSION`, not a project dependency) rewrites one
module into many mutants, each one small change (a flipped comparison, a changed constant, a
dropped argument), and runs the module's mirrored tests against each. A mutant no test fails
on marks something the tests do not look at. Each target runs in a scratch copy of the tree
under `build/mutation/`, so mutmut's configuration and its `mutants/` directory never touch
the working tree; one mutant at a time, at the lowest priority.

Some mutants cannot be killed because they do not change behaviour (`EQUIVALENT`: each with
the line it produces and why it changes nothing). The score is killed / (mutants -
equivalent); the target is at least `TARGET`. A listed equivalent that no longer survives
with the recorded change is reported stale: mutmut numbers mutants per function, so a change
to a function renumbers them, and the list must then be re-judged. Results: MUTATION.md.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "build" / "mutation"
MUTMUT_VERSION = "3.8.1"
TARGET = 0.90

_DETECTED = frozenset({"killed", "timeout", "segfault", "caught by type check"})
_RESULT = re.compile(r"^\s*(\S+): (.+)$")


@dataclass(frozen=True)
class Target:
    """A pure decision module and the tests that mirror it."""

    module: str
    """Path of the module, e.g. `gateway/catalog/codes.py`."""
    tests: tuple[str, ...]
    """Its mirrored test files: the only tests run against its mutants."""
    deselect: tuple[str, ...] = ()
    """Test ids left out: tests that read the module's source text, which mutmut rewrites."""


@dataclass(frozen=True)
class Equivalent:
    """A mutant judged not to change behaviour, so no test can kill it."""

    mutant: str
    """mutmut's name of the mutant."""
    change: str
    """Text of the line the mutant produces, to recognise it if the numbering moves."""
    why: str
    """Why it changes nothing."""


TARGETS: tuple[Target, ...] = (
    Target(
        "gateway/catalog/codes.py",
        ("tests/catalog/test_codes.py",),
        ("tests/catalog/test_codes.py::test_every_reason_in_the_module_has_a_triggering_example",),
    ),
    Target("gateway/catalog/fields.py", ("tests/catalog/test_fields.py",)),
    Target(
        "gateway/applications/request_checks.py", ("tests/applications/test_request_checks.py",)
    ),
    Target("gateway/applications/lifecycle.py", ("tests/applications/test_lifecycle.py",)),
    Target("gateway/routing/policy.py", ("tests/routing/test_policy.py",)),
    Target("gateway/security/authz.py", ("tests/security/test_authz.py",)),
)

_CODES = "gateway.catalog.codes."
_CHECKED = "the caller has checked the length, so strict= never has a mismatch to refuse"
_DEFAULT_STRICT = "strict=False is zip's default, and None is as false"
_FIVE = "five segments were counted just before, so strict= has no mismatch to refuse"
_CHECKS = "gateway.applications.request_checks."
_FIELDS = "gateway.catalog.fields."

EQUIVALENT: tuple[Equivalent, ...] = (
    *(
        Equivalent(f"{_CODES}x__uscc_check__mutmut_{n}", change, f"{_CHECKED} (17)")
        for n, change in ((6, "strict=None"), (9, "_USCC_WEIGHTS, )"), (10, "strict=False"))
    ),
    *(
        Equivalent(f"{_CODES}x__org_check__mutmut_{n}", change, f"{_CHECKED} (8)")
        for n, change in ((6, "strict=None"), (9, "_ORG_WEIGHTS, )"), (10, "strict=False"))
    ),
    *(
        Equivalent(f"{_CODES}x__citizen_check__mutmut_{n}", change, f"{_CHECKED} (17)")
        for n, change in ((7, "strict=None"), (10, "_ID_WEIGHTS, )"), (11, "strict=False"))
    ),
    Equivalent(f"{_CODES}x__license_parts_problem__mutmut_3", "strict=None", _DEFAULT_STRICT),
    Equivalent(f"{_CODES}x__license_parts_problem__mutmut_6", "parts, )", _DEFAULT_STRICT),
    Equivalent(
        f"{_CODES}x_license_identifier_check_char__mutmut_3", "strict=None", _DEFAULT_STRICT
    ),
    Equivalent(
        f"{_CODES}x_license_identifier_check_char__mutmut_6", "version), )", _DEFAULT_STRICT
    ),
    Equivalent(f"{_CODES}x_validate_license_identifier__mutmut_28", "strict=None", _FIVE),
    Equivalent(f"{_CODES}x_validate_license_identifier__mutmut_31", "segments, )", _FIVE),
    Equivalent(f"{_CODES}x_validate_license_identifier__mutmut_32", "strict=False", _FIVE),
    Equivalent(
        f"{_CODES}x_validate_area_code__mutmut_33",
        "_region_problem(code[:7]",
        "the 12 characters are digits already; the region check reads the digits and the first 2",
    ),
    Equivalent(
        f"{_CODES}x__basic_from__mutmut_15",
        "code[9:13]",
        "a basic code is parsed only once validated: 12 characters, so [9:13] is [9:12]",
    ),
    Equivalent(
        f"{_CODES}x__implementation_problem__mutmut_38",
        "code[19:32]",
        "every caller passes exactly 31 characters, so [19:32] is [19:31]",
    ),
    Equivalent(
        f"{_CODES}x_parse_implementation_code__mutmut_16",
        "code[19:32]",
        "the code is validated as 31 characters first, so [19:32] is [19:31]",
    ),
    Equivalent(
        f"{_CODES}x_validate_handling_item_code__mutmut_16",
        "code[:32]",
        "the implementation check reads positions 1-31 only (USCC, level, basic code)",
    ),
    *(
        Equivalent(
            f"{_CHECKS}x__applicant__mutmut_{n}",
            change,
            "an empty name is MISSING either way: the blank-name rule after it says the same",
        )
        for n, change in ((27, "required=None"), (31, "MAX_NAME, )"), (34, "required=False"))
    ),
    Equivalent(f"{_CHECKS}x__form__mutmut_56", "printable=None", "None is as false as False"),
    Equivalent(f"{_CHECKS}x__materials__mutmut_84", "printable=None", "None is as false as False"),
    Equivalent(f"{_FIELDS}x_form_value__mutmut_38", "ok = None", "ok is only tested for truth"),
    Equivalent(f"{_FIELDS}x_form_value__mutmut_57", "province=None", "None is as false as False"),
    Equivalent(
        f"{_FIELDS}x_form_value__mutmut_86",
        "field, None)",
        "a USCC's check reads no provinces (only a 公民身份号码's does)",
    ),
    Equivalent(
        "gateway.routing.policy.x_classify__mutmut_21",
        "default_retry=None",
        "default_retry is only tested for truth, and None is as false as False",
    ),
    Equivalent(
        "gateway.security.authz.x_authorize__mutmut_48",
        "assert_never(None)",
        "the match is exhaustive; were it not, assert_never raises all the same",
    ),
)


@dataclass(frozen=True)
class Score:
    """The outcome of one target."""

    module: str
    total: int
    killed: int
    equivalent: int
    survivors: tuple[str, ...]
    """Mutants neither killed nor judged equivalent (survived, no tests, suspicious, ...)."""
    stale: tuple[str, ...]
    """Listed equivalents of this module that no longer survive with the recorded change."""

    @property
    def ratio(self) -> float:
        """Killed / non-equivalent mutants; 1.0 when every mutant is equivalent."""
        judged = self.total - self.equivalent
        return self.killed / judged if judged else 1.0


def parse_results(text: str) -> dict[str, str]:
    """Status by mutant name, from `mutmut results --all true`."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _RESULT.match(line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def added_lines(diff: str) -> str:
    """The lines a mutant adds, from `mutmut show`, whitespace collapsed, one per line."""
    return "\n".join(
        " ".join(line[1:].split())
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    )


def score(
    module: str,
    statuses: dict[str, str],
    added: dict[str, str],
    equivalent: Sequence[Equivalent],
) -> Score:
    """Scores one module's mutants; `added` holds `added_lines` of each surviving mutant."""
    listed = {e.mutant: e for e in equivalent}
    survivors: list[str] = []
    judged: set[str] = set()
    for name, status in sorted(statuses.items()):
        if status in _DETECTED:
            continue
        known = listed.get(name)
        if status == "survived" and known and " ".join(known.change.split()) in added[name]:
            judged.add(name)
        else:
            survivors.append(name)
    prefix = module.removesuffix(".py").replace("/", ".") + "."
    stale = tuple(name for name in listed if name.startswith(prefix) and name not in judged)
    killed = sum(status in _DETECTED for status in statuses.values())
    return Score(module, len(statuses), killed, len(judged), tuple(survivors), stale)


def _mutmut(install: bool) -> Path:
    """This environment's mutmut, installed first when `install` and it is not the pinned one."""
    mutmut = Path(sys.executable).with_name("mutmut")

    def version() -> str | None:
        importlib.invalidate_caches()
        try:
            return metadata.version("mutmut") if mutmut.exists() else None
        except metadata.PackageNotFoundError:
            return None

    if install and version() != MUTMUT_VERSION:
        pin = f"mutmut=={MUTMUT_VERSION}"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", pin], check=True)
    found = version()
    if found != MUTMUT_VERSION:
        sys.exit(
            f"mutmut {MUTMUT_VERSION} is needed (mutant names are its own), found "
            f"{found or 'none'}: run `make mutation` or `python -m bench.mutation --install`."
        )
    return mutmut


def _copy_tree(into: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)


def _config(target: Target) -> str:
    def lines(values: Sequence[str]) -> str:
        return "".join(f"\n    {v}" for v in values)

    args = ["-p", "no:randomly", *(f"--deselect={t}" for t in target.deselect)]
    return (
        "[mutmut]\nsource_paths = gateway\n"
        f"only_mutate = {target.module}\n"
        f"pytest_add_cli_args_test_selection ={lines(target.tests)}\n"
        f"pytest_add_cli_args ={lines(args)}\n"
        f"also_copy ={lines(['region_stubs', 'standards'])}\n"
    )


def run(target: Target, mutmut: Path) -> Score:
    """Mutates `target.module` in a fresh scratch copy and runs its tests on every mutant."""
    scratch = SCRATCH / Path(target.module).stem
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    _copy_tree(scratch)
    (scratch / "setup.cfg").write_text(_config(target))
    log = scratch.with_suffix(".log")
    with log.open("w") as out:
        done = subprocess.run(
            ["nice", "-n", "19", mutmut, "run", "--max-children", "1"],
            cwd=scratch,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        sys.exit(f"mutmut failed on {target.module} (exit {done.returncode}): see {log}")

    def mutmut_says(*args: str) -> str:
        return subprocess.run(
            [mutmut, *args], cwd=scratch, capture_output=True, text=True, check=True
        ).stdout

    statuses = parse_results(mutmut_says("results", "--all", "true"))
    added = {
        name: added_lines(mutmut_says("show", name))
        for name, status in statuses.items()
        if status == "survived"
    }
    return score(target.module, statuses, added, EQUIVALENT)


def report(scores: Sequence[Score]) -> str:
    """A Markdown table of the scores, then what survived and what is stale."""
    rows = [
        "| module | mutants | killed | equivalent | survived | killed of non-equivalent |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows += [
        f"| `{s.module}` | {s.total} | {s.killed} | {s.equivalent} | {len(s.survivors)} "
        f"| {s.ratio:.1%} |"
        for s in scores
    ]
    for s in scores:
        rows += [f"- survived in {s.module}: {name}" for name in s.survivors]
        rows += [f"- stale equivalent in {s.module}: {name} (re-judge it)" for name in s.stale]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutation", description=__doc__)
    parser.add_argument(
        "modules", nargs="*", metavar="MODULE", help="targets to run (default: all), by path"
    )
    parser.add_argument(
        "--install", action="store_true", help=f"install mutmut {MUTMUT_VERSION} if it is not"
    )
    args = parser.parse_args(argv)
    known = {t.module: t for t in TARGETS}
    unknown = [m for m in args.modules if m not in known]
    if unknown:
        parser.error(f"not a target: {', '.join(unknown)}; targets: {', '.join(known)}")
    mutmut = _mutmut(args.install)
    scores = []
    for module in args.modules or known:
        print(f"mutating {module} ...", flush=True)
        scores.append(run(known[module], mutmut))
    print(report(scores))
    failed = any(s.ratio < TARGET or s.stale for s in scores)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
