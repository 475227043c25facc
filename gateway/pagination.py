"""Opaque page tokens (AIP-158): a position bound to the query that produced it.

A token from another query, or any edited token, is `INVALID_PAGE_TOKEN`; a page size of 0
means the default, and larger sizes are capped.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from gateway.errors import FieldViolation, InvalidPageToken, InvalidRequest


def page_size(requested: int, *, default: int, maximum: int) -> int:
    """The page size to use: the default for 0, the cap for anything larger."""
    if requested < 0:
        raise InvalidRequest(
            "page_size must not be negative",
            field_violations=[FieldViolation("page_size", "must be 0 or more", "NEGATIVE")],
        )
    return default if requested == 0 else min(requested, maximum)


def _tag(position: Any, query: Any) -> str:
    # Covers the position too, so an edited position is refused like a token of another query.
    text = json.dumps([position, query], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_token(position: Any, query: Any) -> str:
    """A token for resuming `query` at `position`."""
    raw = json.dumps({"p": position, "q": _tag(position, query)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_TOKEN_LENGTH = 1024
"""Longest page token accepted."""


def decode_token(token: str, query: Any) -> Any:
    """The position in a token, or None for an empty token; INVALID_PAGE_TOKEN otherwise."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_LENGTH:  # ours are short: do not decode a hostile megabyte
        raise InvalidPageToken(
            "page_token is not a token of this query",
            field_violations=[
                FieldViolation("page_token", "not a token of this query", "BAD_TOKEN")
            ],
        )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deeply nested JSON recurses
        data = None
    if not isinstance(data, dict) or "p" not in data or data.get("q") != _tag(data["p"], query):
        raise InvalidPageToken(
            "page_token is not a token of this query",
            field_violations=[
                FieldViolation("page_token", "not a token of this query", "BAD_TOKEN")
            ],
        )
    return data["p"]
