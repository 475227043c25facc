"""Tests for gateway.pagination.

A page token resumes exactly the query that produced it at exactly the position it was given;
anything else (another query, an edited position, garbage) is INVALID_PAGE_TOKEN.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidPageToken, InvalidRequest
from gateway.pagination import decode_token, encode_token, page_size

QUERY = {"m": "ListApplications", "r": "440000", "o": 0, "s": 0}
POSITION = [1_750_000_123.25, "app-00042"]


def raw(token: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return data


def pack(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_a_token_resumes_its_own_query_at_its_position() -> None:
    token = encode_token(POSITION, QUERY)
    assert decode_token(token, QUERY) == POSITION
    assert decode_token(token, dict(reversed(QUERY.items()))) == POSITION  # key order is no part


def test_the_empty_token_means_the_first_page() -> None:
    assert decode_token("", QUERY) is None


def test_tokens_are_url_safe_and_unpadded() -> None:
    token = encode_token(["ÿÿÿ???>>>", 1], QUERY)
    assert "=" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize(
    "other",
    [
        {**QUERY, "r": "510000"},
        {**QUERY, "s": 3},
        {"m": "ListMatters", "v": "2025.1", "t": 0, "c": 0},
        {},
    ],
)
def test_a_token_is_bound_to_its_query(other: dict[str, Any]) -> None:
    with pytest.raises(InvalidPageToken) as caught:
        decode_token(encode_token(POSITION, QUERY), other)
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_PAGE_TOKEN"
    assert [(v.field, v.reason) for v in error.field_violations] == [("page_token", "BAD_TOKEN")]


@pytest.mark.parametrize(
    "edited",
    [
        [1_750_000_000.0, "app-00042"],
        [1_750_000_123.25, "app-99999"],
        "app-00042",
        -5,
        None,
    ],
)
def test_an_edited_position_is_refused(edited: object) -> None:
    data = raw(encode_token(POSITION, QUERY))
    data["p"] = edited
    with pytest.raises(InvalidPageToken):
        decode_token(pack(data), QUERY)


def test_an_offset_token_cannot_be_moved() -> None:
    query = {"m": "ListMatters", "v": "2025.1", "t": 0, "c": 0}
    data = raw(encode_token(50, query))
    assert data["p"] == 50
    for forged in (0, 49, 51, 10**9, -1, "50"):
        with pytest.raises(InvalidPageToken):
            decode_token(pack({**data, "p": forged}), query)


def _flip(token: str, at: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    replacement = alphabet[(alphabet.index(token[at]) + 1) % len(alphabet)]
    return token[:at] + replacement + token[at + 1 :]


def test_every_single_character_edit_is_refused_or_harmless() -> None:
    token = encode_token(POSITION, QUERY)
    for at in range(len(token)):
        edited = _flip(token, at)
        try:
            position = decode_token(edited, QUERY)
        except InvalidPageToken:
            continue
        # Only an edit in the unused low bits of the last base64 character can decode at all.
        assert at == len(token) - 1
        assert position == POSITION


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!!",
        "a",
        "こんにちは",
        pack([1, 2]),
        pack("p"),
        pack({"p": 1}),
        pack({"q": "0" * 16}),
        pack({"p": 1, "q": None}),
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
        base64.urlsafe_b64encode(b"[" * 100_000).decode(),
    ],
    ids=[
        "word",
        "punctuation",
        "one-char",
        "non-ascii",
        "list",
        "string",
        "no-tag",
        "no-position",
        "null-tag",
        "not-utf8",
        "deep-nesting",
    ],
)
def test_garbage_tokens_are_invalid_page_token(token: str) -> None:
    with pytest.raises(InvalidPageToken):
        decode_token(token, QUERY)


@settings(max_examples=200, deadline=None)
@given(token=st.text(max_size=80).filter(bool))
def test_no_text_decodes_except_a_real_token(token: str) -> None:
    with pytest.raises(InvalidPageToken):
        decode_token(token, QUERY)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None)
@given(position=_JSON, query=_JSON)
def test_any_json_position_round_trips(position: object, query: object) -> None:
    assert decode_token(encode_token(position, query), query) == position


# -- page size -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "expected"), [(0, 50), (1, 1), (49, 49), (200, 200), (201, 200), (10**9, 200)]
)
def test_page_size_defaults_and_caps(requested: int, expected: int) -> None:
    assert page_size(requested, default=50, maximum=200) == expected


@pytest.mark.parametrize("requested", [-1, -50, -(2**31)])
def test_a_negative_page_size_is_invalid_argument(requested: int) -> None:
    with pytest.raises(InvalidRequest) as caught:
        page_size(requested, default=50, maximum=200)
    error = caught.value
    assert type(error) is InvalidRequest
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [(v.field, v.reason) for v in error.field_violations] == [("page_size", "NEGATIVE")]
