"""Working-day deadlines against the State Council's published holiday schedules.

Expected dates are written by hand from the notices (国务院办公厅关于2025年 / 2026年部分节假日
安排的通知), not computed:

- 2025 春节: off 01-28 (Tue) to 02-04 (Tue); worked Sunday 01-26 and Saturday 02-08.
- 2025 国庆节、中秋节: off 10-01 to 10-08; worked Sunday 09-28 and Saturday 10-11.
- 2026 春节: off 02-15 (Sun) to 02-23 (Mon); worked Saturday 02-14 and Saturday 02-28.

The day of acceptance never counts; a deadline ends at 23:59:59.999999 China time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import chinese_calendar
import pytest

from gateway.applications.deadlines import (
    CHINA_TIME,
    Deadline,
    calendar_last_day,
    deadline,
    is_overdue,
)
from gateway.catalog.model import TimeLimit


def at(day: date, hour: int = 10) -> datetime:
    """`hour` o'clock on `day`, China time."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=CHINA_TIME)


def working(n: int) -> TimeLimit:
    return TimeLimit(n, "WORKING_DAYS")


def natural(n: int) -> TimeLimit:
    return TimeLimit(n, "NATURAL_DAYS")


def end_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 23, 59, 59, 999_999, tzinfo=CHINA_TIME)


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        # Friday before 春节 2025: Sun 01-26 (worked) 1, Mon 01-27 2, holiday, 02-05..02-07 3..5.
        (date(2025, 1, 24), 5, date(2025, 2, 7)),
        # One more lands on the worked Saturday after it.
        (date(2025, 1, 24), 6, date(2025, 2, 8)),
        # The last working day before the holiday: the next one is after it.
        (date(2025, 1, 27), 1, date(2025, 2, 5)),
        # Friday before 国庆 2025: Sun 09-28 (worked) 1, 09-29 2, 09-30 3, holiday, 10-09 4, 10-10 5
        (date(2025, 9, 26), 5, date(2025, 10, 10)),
        # The eve of the holiday: 10-09 1, 10-10 2, Sat 10-11 (worked) 3.
        (date(2025, 9, 30), 3, date(2025, 10, 11)),
        # 春节 2026: Sat 02-14 (worked) 1, holiday 02-15..02-23, 02-24 2, 02-25 3.
        (date(2026, 2, 13), 3, date(2026, 2, 25)),
        # The worked Saturday after 春节 2026.
        (date(2026, 2, 27), 1, date(2026, 2, 28)),
        # An ordinary week: Friday + 1 is Monday.
        (date(2025, 3, 7), 1, date(2025, 3, 10)),
    ],
)
def test_working_days_follow_the_official_calendar(start: date, days: int, due: date) -> None:
    result = deadline(at(start), working(days))
    assert result == Deadline(end_of(due), provisional=False)
    assert result.day == due


def test_a_start_on_a_holiday_counts_from_the_next_working_day() -> None:
    # 正月初二 (2025-01-29): 02-05 1, 02-06 2, 02-07 3, Sat 02-08 (worked) 4, Mon 02-10 5.
    assert deadline(at(date(2025, 1, 29)), working(5)).day == date(2025, 2, 10)


def test_a_start_on_an_adjusted_working_day_does_not_count_that_day() -> None:
    # Sunday 2025-01-26 is worked; the count starts after it: 01-27 1, 02-05..02-08 2..5.
    assert deadline(at(date(2025, 1, 26)), working(5)).day == date(2025, 2, 8)


def test_the_day_is_the_date_in_china_time() -> None:
    # 2025-01-23 16:30 UTC is already Friday 01-24 in China: as the Friday case above.
    friday = deadline(datetime(2025, 1, 23, 16, 30, tzinfo=UTC), working(5))
    assert friday.day == date(2025, 2, 7)
    # 15:59 UTC is still Thursday 01-23: Fri 01-24 1, Sun 01-26 2, 01-27 3, 02-05 4, 02-06 5.
    thursday = deadline(datetime(2025, 1, 23, 15, 59, tzinfo=UTC), working(5))
    assert thursday.day == date(2025, 2, 6)
    assert thursday.due.utcoffset() == timedelta(hours=8)


def test_natural_days_count_every_day_holidays_included() -> None:
    assert deadline(at(date(2025, 1, 24)), natural(15)) == Deadline(
        end_of(date(2025, 2, 8)), provisional=False
    )
    # No calendar needed, so never provisional, even past its data.
    assert deadline(at(date(2026, 12, 20)), natural(30)) == Deadline(
        end_of(date(2027, 1, 19)), provisional=False
    )


@pytest.mark.parametrize("unit", ["WORKING_DAYS", "NATURAL_DAYS"])
def test_zero_days_end_with_the_day_of_acceptance(unit: str) -> None:
    # Even on a holiday: 即办件 are done on the spot.
    assert deadline(at(date(2025, 1, 29)), TimeLimit(0, unit)) == Deadline(
        end_of(date(2025, 1, 29)), provisional=False
    )


def test_the_pinned_calendar_covers_2004_to_2026() -> None:
    # Raising the chinese-calendar pin moves this, and the dates of the tests below.
    assert calendar_last_day() == date(2026, 12, 31)
    assert chinese_calendar.is_workday(date(2026, 12, 31))
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2027, 1, 1))
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2003, 12, 31))


def test_within_the_data_a_deadline_is_not_provisional() -> None:
    # Mon 2026-12-28: 12-29 1, 12-30 2, 12-31 3, the last day the data covers.
    assert deadline(at(date(2026, 12, 28)), working(3)) == Deadline(
        end_of(date(2026, 12, 31)), provisional=False
    )


def test_beyond_the_data_only_weekends_rest_and_the_deadline_is_provisional() -> None:
    # 12-29..12-31 1..3; Fri 2027-01-01 counts as a working day (元旦 is not known yet) 4;
    # the weekend rests; Mon 01-04 5.
    assert deadline(at(date(2026, 12, 28)), working(5)) == Deadline(
        end_of(date(2027, 1, 4)), provisional=True
    )
    # Wholly beyond: Fri 2027-03-05 + 1 is Mon 03-08.
    assert deadline(at(date(2027, 3, 5)), working(1)) == Deadline(
        end_of(date(2027, 3, 8)), provisional=True
    )


def test_before_the_data_the_same_rule_holds() -> None:
    # Tue 2003-12-30: Wed 12-31 (unknown) 1, 2004-01-01 is 元旦 (known), Fri 01-02 2.
    assert deadline(at(date(2003, 12, 30)), working(2)) == Deadline(
        end_of(date(2004, 1, 2)), provisional=True
    )


def test_overdue_is_strictly_after_the_last_instant_of_the_last_day() -> None:
    due = deadline(at(date(2025, 1, 24)), working(5))
    # 2025-02-07 23:59:59.999999 +08:00 is 15:59:59.999999 UTC.
    last = datetime(2025, 2, 7, 15, 59, 59, 999_999, tzinfo=UTC)
    assert not is_overdue(due, last)
    assert is_overdue(due, last + timedelta(microseconds=1))
    assert not is_overdue(due, at(date(2025, 2, 7), hour=23))
    assert is_overdue(due, at(date(2025, 2, 8), hour=0))


def test_working_days_agree_with_the_librarys_own_count() -> None:
    # From a working day, the library's `find_workday(n, day)` is the n-th working day after it.
    day = date(2025, 1, 1)
    while day < date(2026, 12, 1):
        if chinese_calendar.is_workday(day):
            for n in (1, 5, 20):
                expected = chinese_calendar.find_workday(n, day)
                assert deadline(at(day), working(n)).day == expected, (day, n)
        day += timedelta(days=1)


@pytest.mark.parametrize(
    ("start", "limit", "message"),
    [
        (datetime(2025, 1, 24, 10), working(5), "timezone-aware"),
        (at(date(2025, 1, 24)), working(-1), "negative"),
        (at(date(2025, 1, 24)), TimeLimit(5, "HOURS"), "unknown time limit unit"),
    ],
)
def test_refuses_a_naive_start_a_negative_limit_and_an_unknown_unit(
    start: datetime, limit: TimeLimit, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        deadline(start, limit)
