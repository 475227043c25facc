"""Tests for gateway.times: the wall clock's protobuf form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from gateway.times import timestamp, utc_now


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        # Offsets in whole minutes, as real zones have (`FromDatetime` drops an offset's seconds).
        timezones=st.builds(
            lambda minutes: timezone(timedelta(minutes=minutes)),
            st.integers(min_value=-23 * 60, max_value=23 * 60),
        ),
    )
)
def test_timestamp_of_a_datetime_is_exact_to_the_microsecond(moment: datetime) -> None:
    reference = timestamp_pb2.Timestamp()
    reference.FromDatetime(moment)
    assert timestamp(moment) == reference


@given(st.integers(min_value=0, max_value=2**33).map(lambda n: n / 1000))
def test_timestamp_of_unix_seconds_keeps_the_milliseconds(seconds: float) -> None:
    assert abs(timestamp(seconds).ToNanoseconds() - seconds * 1e9) < 1e3


def test_utc_now_is_aware_and_in_utc() -> None:
    now = utc_now()
    assert now.tzinfo is UTC
