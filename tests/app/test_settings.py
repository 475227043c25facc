"""The settings reference: complete, true to the configuration, and fresh in docs/."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import subprocess
from pathlib import Path

import pytest

from gateway.app import config
from gateway.app.config import load_config
from gateway.app.settings import SETTINGS, render

ROOT = Path(__file__).resolve().parents[2]


def keys_the_config_reads() -> set[str]:
    """Every string constant of `gateway.app.config` that is a whole setting key."""
    tree = ast.parse(inspect.getsource(config))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and (node.value.startswith("TONGBAN_") or node.value == "PGPASSWORD")
        and node.value.replace("_", "").isalnum()
        and node.value.isupper()
    }


def test_the_reference_names_exactly_the_keys_the_config_reads() -> None:
    documented = [s.key for s in SETTINGS]
    assert len(documented) == len(set(documented)), "a key is listed twice"
    read = keys_the_config_reads()
    assert len(read) > 40
    assert set(documented) - read == set(), "documented, never read"
    assert read - set(documented) == set(), "read, not documented"


def test_each_key_the_config_reads_changes_the_configuration() -> None:
    # The scan above finds keys by their spelling; this shows they are the ones that matter.
    base = {"TONGBAN_TLS_CA": "ca.pem", "TONGBAN_TLS_CERT": "c.pem", "TONGBAN_TLS_KEY": "k.pem"}
    unchanged = load_config(base)
    assert load_config({**base, "TONGBAN_GRACE": "7"}) != unchanged
    assert load_config({**base, "TONGBAN_BREAKER_CLOSE_AFTER": "3"}) != unchanged


@pytest.mark.parametrize(
    "base",
    [
        {"TONGBAN_TLS_CA": "ca.pem", "TONGBAN_TLS_CERT": "c.pem", "TONGBAN_TLS_KEY": "k.pem"},
        {
            "TONGBAN_TLS_CA": "ca.pem",
            "TONGBAN_TLS_CERT": "c.pem",
            "TONGBAN_TLS_KEY": "k.pem",
            "TONGBAN_STORE": "postgresql://gw@127.0.0.1:5432/tongban",
        },
    ],
    ids=["sqlite", "postgresql"],
)
def test_every_default_written_as_a_value_is_the_default(base: dict[str, str]) -> None:
    unset = load_config(base)
    literal = [s for s in SETTINGS if not s.default.startswith("(")]
    assert len(literal) > 30
    for setting in literal:
        given = load_config({**base, setting.key: setting.default})
        differences = {
            f.name
            for f in dataclasses.fields(unset)
            if getattr(given, f.name) != getattr(unset, f.name)
        }
        assert differences == set(), f"{setting.key}={setting.default} is not the default"


def test_docs_settings_is_fresh() -> None:
    assert (ROOT / "docs" / "SETTINGS.md").read_text(encoding="utf-8") == render(), (
        "docs/SETTINGS.md is stale: run `make docs`"
    )


def test_make_docs_regenerates_it() -> None:
    planned = subprocess.run(
        ["make", "--no-print-directory", "-n", "docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "-m gateway.app.settings > docs/SETTINGS.md" in planned


def test_the_readme_links_the_reference() -> None:
    assert "docs/SETTINGS.md" in (ROOT / "README.md").read_text(encoding="utf-8")
