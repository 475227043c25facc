"""The import rule of ARCHITECTURE.md, checked on the real tree.

The layers are import-linter's contract in `pyproject.toml`; `make lint` runs it, and so does
this test, so that `make test` fails on an import that runs upward. grimp's import graph (the
one import-linter reads) shows that no module imports another that imports it back.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_every_import_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("gateway", exclude_type_checking_imports=False)
    cycles = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            if graph.chain_exists(importer=imported, imported=importer):
                cycles.add(tuple(sorted((importer, imported))))
    assert not cycles, sorted(cycles)


def test_the_layers_name_every_top_level_module_of_the_gateway() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (layers,) = [
        c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    ]
    named = {name.strip() for layer in layers for name in layer.split("|")}
    modules = {
        f"gateway.{path.stem}"
        for path in (ROOT / "gateway").iterdir()
        if (path.is_dir() and (path / "__init__.py").exists())
        or (path.suffix == ".py" and path.stem != "__init__")
    }
    assert named == modules


def test_architecture_md_lists_the_layers_of_the_contract_in_order() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (layers,) = [
        c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    ]
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if re.match(r"^\| \d+ \|", line)]
    # The package column is the third cell; `\|` inside it separates siblings.
    cells = [re.split(r"(?<!\\)\|", row) for row in rows]
    documented = [" | ".join(re.findall(r"`(gateway(?:\.\w+)?)`", c[2])) for c in cells]
    assert documented == layers


def test_every_path_in_the_readme_architecture_table_exists() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| Path | What it holds |", 1)[1].split("\n\n", 1)[0]
    paths = [
        p for row in table.splitlines()[2:] for p in re.findall(r"`([^`]+)`", row.split("|")[1])
    ]
    assert paths
    for path in paths:
        name = path if "/" in path else f"gateway/{path}"
        assert (ROOT / name).exists(), path
