"""ResolveLocalCode's answer on the wire, written without building it.

Building a `ResolveLocalCodeResponse` (a message, the matter's bytes parsed into it, then
serialized again) costs the server far more than the lookup, which is a few dict reads; so the
answer is written as bytes. They are the region's and the row's strings, then one run cached per
matter, version and shape: the matter's field, the shape, the version.
The matter's bytes come from `convert.matter_bytes`, the cache `convert.resolved` uses too.
tests/catalog/test_wire.py checks the answer byte for byte against the built message.
"""

from __future__ import annotations

from gateway.catalog.convert import matter_bytes
from gateway.catalog.model import Matter
from gateway.catalog.resolution import Resolution, Shape

_VARINTS = [bytes((n,)) for n in range(0x80)] + [
    bytes((n & 0x7F | 0x80, n >> 7)) for n in range(0x80, 0x800)
]
"""Protobuf varints of 0 to 2047: every length of a row's text (at most 200 characters of
up to 4 bytes each, problems.MAX_NAME_LENGTH) and of most answers."""


def varint(n: int) -> bytes:
    """`n` (non-negative) as a protobuf varint."""
    if n < 0x800:
        return _VARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string_field(tag: bytes, value: str) -> bytes:
    """A string field as proto3 writes it: absent when empty."""
    data = value.encode()
    return tag + varint(len(data)) + data if data else b""


_TAILS: dict[tuple[int, str, Shape], tuple[Matter, bytes]] = {}
"""(id of a matter, version, shape) → (the matter, `ResolvedMatter` fields 5 to 7 serialized)."""
_TAILS_MAX = 100_000
"""Entries `_TAILS` holds before it is cleared, as `convert`'s cache of matters."""


def _tail(m: Matter, version: str, shape: Shape) -> bytes:
    if len(_TAILS) >= _TAILS_MAX:
        _TAILS.clear()
    data = matter_bytes(m, version)
    tail = (
        b"\x2a"  # field 5, matter
        + varint(len(data))
        + data
        + b"\x30"  # field 6, shape (never 0, so always written)
        + varint(shape.value)
        + _string_field(b"\x3a", version)  # field 7, catalog_version
    )
    _TAILS[(id(m), version, shape)] = (m, tail)
    return tail


def resolve_response(r: Resolution) -> bytes:
    """`ResolveLocalCodeResponse(resolved=convert.resolved(r))` serialized, byte for byte."""
    region_code, matter, shape, version, index, row = r
    found = _TAILS.get((id(matter), version, shape))
    tail = found[1] if found is not None and found[0] is matter else _tail(matter, version, shape)
    # fields 1 to 4, the row's text, inlined: a `_string_field` call each would weigh on every
    # answer
    local_code, local_name, agency_name = index.row_names(row)
    region, local = region_code.encode(), local_code.encode()
    name, agency = local_name.encode(), agency_name.encode()
    v = _VARINTS
    body = b"".join(
        (
            b"\x0a" + v[len(region)] + region if region else b"",
            b"\x12" + v[len(local)] + local if local else b"",
            b"\x1a" + v[len(name)] + name if name else b"",
            b"\x22" + v[len(agency)] + agency if agency else b"",
            tail,
        )
    )
    return b"\x0a" + varint(len(body)) + body  # ResolveLocalCodeResponse field 1, resolved
