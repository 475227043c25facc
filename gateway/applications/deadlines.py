"""Deadlines of time limits (办结时限) on China's official working-day calendar.

A working day is Monday to Friday, minus the public holidays, plus the adjusted working days
(调休: Saturdays or Sundays worked in exchange), as the State Council General Office publishes
them each year (国务院办公厅关于某年部分节假日安排的通知). The dates come from the maintained
`chinese-calendar` package, never from a lunar computation of our own; release 1.11.0 holds
2004 to 2026 (through the notice for 2026). Each year's notice comes out around November of
the year before, and a release with it follows; `calendar_last_day` feeds the
`TongbanWorkdayCalendarEnding` alert so that the pin is raised in time.

The rules, in plain words:

- The day of acceptance does not count: counting starts the next day. 《民法典》第二百零一条:
  "按照年、月、日计算期间的，开始的当日不计入，自下一日开始计算"; a time limit in working days
  leaves out public holidays (《行政许可法》第八十二条). The reference notes of this project say
  nothing more specific, so the general rule stands. So `N` working days end on the N-th working
  day after the day of acceptance, whatever kind of day acceptance fell on (an online submission
  on a holiday, or on an adjusted working Saturday, starts the count the same way).
- A deadline ends at the end of its last day, 24:00 China time (第二百零三条: "期间的最后一日的截止
  时间为二十四时"); office hours are not used, online services run all day and hours differ by
  province. It is held as the last microsecond of that day, 23:59:59.999999+08:00, so the
  instant shows the due date itself when printed in China time; overdue is strictly after it.
- China time is a fixed UTC+08:00 (Asia/Shanghai has kept no daylight saving since 1991, well
  before the calendar's first year), so no time-zone database is needed. A start's day is its
  date in China time, whatever offset it arrives with.
- Natural days count every day, holidays included, and never need the calendar. (Article 203
  also moves a period whose last day is a statutory rest day to the day after it; that is a
  question for each natural-day matter's own regulation and is not applied here.)
- Zero days (即办件) end at the end of the day of acceptance.
- A day outside the calendar's data counts weekends only (Monday to Friday work), and a
  deadline whose count passes over any such day is `provisional`: it may move when the
  next year's holidays are published. The last covered day is 31 December of the last year in
  the data, but next year's notice can still turn late-December days of it into holidays or
  adjusted working days (the 2019 notice made Saturday 2018-12-29 a working day).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import chinese_calendar

from gateway.catalog.model import TimeLimit

CHINA_TIME = timezone(timedelta(hours=8), "Asia/Shanghai")
"""China Standard Time, UTC+08:00, the zone every deadline day is counted in."""

WORKING_DAYS = "WORKING_DAYS"
NATURAL_DAYS = "NATURAL_DAYS"

_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a time limit runs out."""

    due: datetime
    """The last instant of the last day: 23:59:59.999999 in China time (UTC+08:00)."""
    provisional: bool
    """True when the count passed over a day outside the calendar's data (weekends only there)."""

    @property
    def day(self) -> date:
        """The last day, in China time."""
        return self.due.date()


def calendar_last_day() -> date:
    """The last day the official calendar's data covers (31 December of its last year)."""
    return date(max(chinese_calendar.holidays).year, 12, 31)


def deadline(start: datetime, limit: TimeLimit) -> Deadline:
    """The deadline of `limit` for something accepted at `start` (timezone-aware).

    Raises ValueError for a naive `start`, a negative value or an unknown unit.
    """
    if start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    if limit.value < 0:
        raise ValueError(f"a time limit cannot be negative: {limit.value}")
    day = start.astimezone(CHINA_TIME).date()
    provisional = False
    if limit.unit == NATURAL_DAYS:
        day += limit.value * _ONE_DAY
    elif limit.unit == WORKING_DAYS:
        day, provisional = _working_days_after(day, limit.value)
    else:
        raise ValueError(f"unknown time limit unit: {limit.unit!r}")
    return Deadline(datetime.combine(day, time.max, CHINA_TIME), provisional)


def is_overdue(deadline: Deadline, now: datetime) -> bool:
    """Whether `now` (timezone-aware) is past the deadline."""
    return now > deadline.due


@functools.lru_cache(maxsize=4096)
def _working_days_after(day: date, count: int) -> tuple[date, bool]:
    """The `count`-th working day after `day`, and whether the count passed over a day outside
    the calendar's data. Remembered: the calendar's data is fixed for the life of the process,
    and deadlines are counted from a handful of days with a handful of limits."""
    provisional = False
    while count:
        day += _ONE_DAY
        working, known = _working_day(day)
        provisional = provisional or not known
        if working:
            count -= 1
    return day, provisional


def _working_day(day: date) -> tuple[bool, bool]:
    """(whether `day` is a working day, whether the official calendar knows it)."""
    try:
        return bool(chinese_calendar.is_workday(day)), True
    except NotImplementedError:  # the package's way of saying "no data for that year"
        return day.weekday() < 5, False


__all__ = [
    "CHINA_TIME",
    "NATURAL_DAYS",
    "WORKING_DAYS",
    "Deadline",
    "calendar_last_day",
    "deadline",
    "is_overdue",
]
