"""The wall clock and its protobuf form, shared by every package."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    """The wall clock, timezone-aware."""
    return datetime.now(UTC)


def timestamp(value: datetime | float) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp from an aware datetime or Unix seconds."""
    if isinstance(value, datetime):
        # Exact to the microsecond, as `FromDatetime`, without its pure-Python conversions.
        since = value - _EPOCH
        return timestamp_pb2.Timestamp(
            seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000
        )
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(value * 1e9))
    return ts
