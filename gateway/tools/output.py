"""How `tongban` shows what it did: readable by default, JSON for scripts (`--json`).

Invariants:
- stdout carries the result and nothing else; refusals, notes and progress go to stderr. With
  `--json` stdout is one JSON document (a message in protobuf's JSON mapping, or an object).
- Readable output names states, codes and names (`DELIVERED`, `002035011000 异地就医结算备案`),
  never raw enum numbers or proto JSON, in `rich` tables that are not wrapped when piped.
- A refusal shows the server's code, reason, message and the reason's metadata (a denial's
  cause, an ambiguous code's candidates), the clerk's message (zh-CN) when the status carries
  one, and each field violation under the flag the user typed: every
  command has one map from request field paths to its flags (`FlagMap`); a path the map does
  not know is shown as it is.
- Progress is drawn only on a terminal, and erased when the work is done.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from gateway.errors import unpack_details

PIPED_WIDTH = 200
"""Columns of a table written to a pipe or file: wide enough that rows are not wrapped."""


class FlagMap:
    """A command's one map from request field paths to what the user typed.

    Keys are field paths or their prefixes (`applicant.id_number`, `materials`); the longest key
    that matches a path at a field boundary wins. A label starting with `--` names a flag: a
    longer path is added in parentheses (`--paper/--license (materials[1].material_id)`).
    Any other label replaces the key (`FILE: entries` for `region_catalog.entries`).
    """

    def __init__(self, labels: Mapping[str, str]) -> None:
        self._labels = dict(sorted(labels.items(), key=lambda kv: -len(kv[0])))

    def __call__(self, path: str) -> str:
        for key, label in self._labels.items():
            if path == key:
                return label
            if path.startswith(key) and path[len(key)] in ".[":
                rest = path[len(key) :]
                return f"{label} ({path})" if label.startswith("--") else label + rest
        return path


NO_FLAGS = FlagMap({})


class Output:
    """Where one command writes: readable, or JSON with `json_mode`."""

    def __init__(
        self, *, json_mode: bool, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.json_mode = json_mode
        self.out = _console(stdout or sys.stdout)
        self.err = _console(stderr or sys.stderr)

    # -- results -----------------------------------------------------------------------------

    def data(self, value: object) -> None:
        """A JSON document on stdout."""
        self.out.file.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")

    def message(self, message: Message) -> None:
        """A protobuf message as JSON on stdout."""
        self.out.file.write(json_format.MessageToJson(message, ensure_ascii=False) + "\n")

    def line(self, text: str = "") -> None:
        """A line of readable output on stdout (no markup, never wrapped)."""
        self.out.print(text, markup=False, soft_wrap=True)

    def fields(self, pairs: Sequence[tuple[str, str]]) -> None:
        """`name  value` lines, aligned."""
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for name, value in pairs:
            table.add_row(name, value)
        self.out.print(table)

    def table(
        self, columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None
    ) -> None:
        """A table of rows on stdout."""
        table = Table(*columns, title=title, title_justify="left", highlight=False)
        for row in rows:
            table.add_row(*row)
        self.out.print(table)

    def note(self, text: str) -> None:
        """A line on stderr (never wrapped): something the user should know that is not the
        result."""
        self.err.print(text, markup=False, soft_wrap=True)

    # -- long work ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[Callable[[], None]]:
        """A bar (or, without `total`, a spinner) on stderr while the block runs; yields the
        function that advances it by one."""
        columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        with Progress(
            *columns, console=self.err, transient=True, disable=not self.err.is_terminal
        ) as bar:
            task = bar.add_task(description, total=total)
            yield lambda: bar.advance(task)

    # -- failures ----------------------------------------------------------------------------

    def refused(self, error: grpc.aio.AioRpcError, flags: FlagMap = NO_FLAGS) -> None:
        """Shows a refusal by the gateway (or a stub) on stderr."""
        status = rpc_status.from_call(error)
        details = unpack_details(status) if status is not None else []
        info = next((d for d in details if isinstance(d, error_details_pb2.ErrorInfo)), None)
        if self.json_mode:
            body: dict[str, object] = {"code": error.code().name, "message": error.details()}
            body["details"] = [json.loads(json_format.MessageToJson(d)) for d in details]
            self.err.file.write(json.dumps(body, ensure_ascii=False, indent=2) + "\n")
            return
        reason = f", {info.reason}" if info is not None else ""
        self.note(f"tongban: refused ({error.code().name}{reason}): {error.details()}")
        for key, value in sorted(info.metadata.items()) if info is not None else ():
            self.note(f"  {key}: {value}")
        for detail in details:
            if isinstance(detail, error_details_pb2.BadRequest):
                for v in detail.field_violations:
                    self.note(f"  {flags(v.field) or '(request)'}: {v.reason}: {v.description}")
            elif isinstance(detail, error_details_pb2.LocalizedMessage):
                self.note(f"  {detail.locale}: {detail.message}")


def _console(file: TextIO) -> Console:
    console = Console(file=file, soft_wrap=False, highlight=False, emoji=False)
    if not console.is_terminal:
        console.width = PIPED_WIDTH
    return console
