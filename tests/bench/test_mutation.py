"""The mutation-testing runner's bookkeeping: what mutmut says, how it is scored, and that the
targets and the equivalents it lists name real modules and tests (mutmut itself runs only in
`make mutation`)."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from bench import mutation
from bench.mutation import Equivalent, Score

ROOT = Path(__file__).resolve().parents[2]
M = "gateway.catalog.codes."

SHOWN = f"""# {M}x__org_check__mutmut_6: survived
--- gateway/catalog/codes.py
+++ gateway/catalog/codes.py
@@ -1,3 +1,3 @@
 def _org_check(body: str) -> str:
-    total = sum(_ALNUM36_VALUES[c] * w for c, w in zip(body, _ORG_WEIGHTS, strict=True))
+    total = sum(_ALNUM36_VALUES[c] * w for c, w in zip(body, _ORG_WEIGHTS,   strict=None))
"""


def test_parse_results() -> None:
    text = f"    {M}x_a__mutmut_1: killed\n    {M}x_a__mutmut_2: no tests\n\n"
    assert mutation.parse_results(text) == {
        f"{M}x_a__mutmut_1": "killed",
        f"{M}x_a__mutmut_2": "no tests",
    }


def test_added_lines_are_the_plus_lines_with_whitespace_collapsed() -> None:
    assert mutation.added_lines(SHOWN) == (
        "total = sum(_ALNUM36_VALUES[c] * w for c, w in zip(body, _ORG_WEIGHTS, strict=None))"
    )


def test_score() -> None:
    statuses = {
        f"{M}x_a__mutmut_1": "killed",
        f"{M}x_a__mutmut_2": "timeout",
        f"{M}x_a__mutmut_3": "survived",  # listed, with its change: equivalent
        f"{M}x_a__mutmut_4": "survived",  # listed, but another change now: a survivor, stale
        f"{M}x_a__mutmut_5": "survived",
        f"{M}x_a__mutmut_6": "no tests",
    }
    added = {
        f"{M}x_a__mutmut_3": "return  x[:7]",
        f"{M}x_a__mutmut_4": "return x + 1",
        f"{M}x_a__mutmut_5": "return None",
    }
    listed = [
        Equivalent(f"{M}x_a__mutmut_3", "x[:7]", "why"),
        Equivalent(f"{M}x_a__mutmut_4", "x[:7]", "why"),
        Equivalent(f"{M}x_a__mutmut_1", "x", "killed now: stale"),
        Equivalent("gateway.catalog.fields.x_b__mutmut_1", "y", "another module's"),
    ]
    found = mutation.score("gateway/catalog/codes.py", statuses, added, listed)
    assert found == Score(
        "gateway/catalog/codes.py",
        total=6,
        killed=2,
        equivalent=1,
        survivors=(f"{M}x_a__mutmut_4", f"{M}x_a__mutmut_5", f"{M}x_a__mutmut_6"),
        stale=(f"{M}x_a__mutmut_4", f"{M}x_a__mutmut_1"),
    )
    assert found.ratio == pytest.approx(2 / 5)


def test_a_module_of_equivalents_alone_scores_full() -> None:
    assert Score("m.py", 2, 0, 2, (), ()).ratio == 1.0


def test_report() -> None:
    text = mutation.report([Score("m.py", 10, 8, 1, ("m.x_a__mutmut_1",), ("m.x_b__mutmut_2",))])
    assert "| `m.py` | 10 | 8 | 1 | 1 | 88.9% |" in text
    assert "- survived in m.py: m.x_a__mutmut_1" in text
    assert "- stale equivalent in m.py: m.x_b__mutmut_2 (re-judge it)" in text


@pytest.mark.parametrize("target", mutation.TARGETS, ids=lambda t: t.module)
def test_each_target_names_its_module_and_mirrored_tests(target: mutation.Target) -> None:
    assert (ROOT / target.module).is_file()
    for test in (*target.tests, *(t.split("::")[0] for t in target.deselect)):
        assert (ROOT / test).is_file()
    assert Path(target.tests[0]).name == f"test_{Path(target.module).name}"


def test_each_equivalent_is_of_a_target_and_listed_once() -> None:
    prefixes = tuple(t.module.removesuffix(".py").replace("/", ".") + "." for t in mutation.TARGETS)
    names = [e.mutant for e in mutation.EQUIVALENT]
    assert all(name.startswith(prefixes) for name in names)
    assert len(set(names)) == len(names)


def test_the_config_reads_as_mutmut_reads_it() -> None:
    # mutmut reads setup.cfg's [mutmut] with configparser and splits lists on newlines.
    parser = configparser.ConfigParser()
    parser.read_string(mutation._config(mutation.TARGETS[0]))

    def listed(key: str) -> list[str]:
        return [v for v in parser.get("mutmut", key).split("\n") if v]

    assert parser.get("mutmut", "only_mutate") == "gateway/catalog/codes.py"
    assert listed("pytest_add_cli_args_test_selection") == ["tests/catalog/test_codes.py"]
    assert listed("pytest_add_cli_args") == [
        "-p",
        "no:randomly",
        "--deselect=tests/catalog/test_codes.py::"
        "test_every_reason_in_the_module_has_a_triggering_example",
    ]
    assert listed("also_copy") == ["region_stubs", "standards"]


def test_an_unknown_module_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        mutation.main(["gateway/nowhere.py"])
    assert exited.value.code == 2
    assert "not a target: gateway/nowhere.py" in capsys.readouterr().err
