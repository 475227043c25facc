"""Structured JSON logs: one object per line, with the application's ids and province.

Invariants:

- Every record is one JSON object: `time`, `level`, `logger`, `message`, plus the context of
  the RPC being handled (`application_id`, `request_id`, `province`, `rpc`) when known, plus
  any `extra=` fields.
- Personal data never reaches the output in clear: any number shaped like an applicant's id
  (17 digits and a digit or X: a 公民身份号码, a 港澳台居民居住证, a 2023 外国人永久居留身份证;
  15 digits: an old 公民身份号码; 3 capitals and 12 digits: a 2017 外国人永久居留身份证) is
  masked with `mask_citizen_id` in the message, the extra fields and the exception text.
  Code that logs must still never pass a name: names cannot be recognised reliably, so the
  rule is "log ids, not people".
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

from gateway.api.v1 import application_pb2
from gateway.catalog.codes import mask_citizen_id
from gateway.events import EventBus, SubmissionAnswered, SubmissionRefused

_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "tongban_log_context", default=MappingProxyType({})
)

# 18 characters (17 digits + digit or X), the old 15-digit form, or a 2017 permanent residence
# number (3 capitals + 12 digits), not inside a longer word or number.
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx]|\d{15}|[A-Z]{3}\d{12})(?![0-9A-Za-z])")

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def mask(text: str) -> str:
    """`text` with every id number masked."""
    return _ID_NUMBER.sub(lambda m: mask_citizen_id(m.group(0)), text)


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Adds fields (e.g. `application_id`) to every record logged inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: str) -> None:
    """Adds fields to the current context until it ends (e.g. once an id is known)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return mask(str(value))


class JsonFormatter(logging.Formatter):
    """Formats records as one masked JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        entry.update(_context.get())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _clean(value)
        if record.exc_info:
            entry["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: int | str = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Sends every log record to `stream` (stderr) as JSON; returns the handler installed."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class AccessLog:
    """Listener: one `gateway.access` record per submission answered or refused (INFO)."""

    def __init__(self) -> None:
        self._log = logging.getLogger("gateway.access")

    def listen(self, bus: EventBus) -> None:
        """Logs what the application service emits."""
        bus.subscribe(SubmissionAnswered, self._answered)
        bus.subscribe(SubmissionRefused, self._refused)

    def _answered(self, event: SubmissionAnswered) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        app = event.application
        self._log.info(
            "submission answered",
            extra={
                "application_id": app.application_id,
                "origin": app.origin_region,
                "state": application_pb2.ApplicationState.Name(app.state),
                "replayed": event.replayed,
                "delivery_attempts": app.delivery_attempts,
            },
        )

    def _refused(self, event: SubmissionRefused) -> None:
        if self._log.isEnabledFor(logging.INFO):
            self._log.info(
                "submission refused",
                extra={
                    "request_id": event.request_id,
                    "province": event.target_region,
                    "grpc_code": event.code,
                    "reason": event.reason,
                },
            )
