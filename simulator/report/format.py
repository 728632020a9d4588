"""How values read in the report: one function per kind of value.

The browser test formats the manifest's numbers with these same functions and compares them
with the text the page shows, so a figure in a table is checked digit for digit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

NS_PER_S: Final = 1_000_000_000

ValueKind = Literal["money", "count", "quantity", "percent", "micros"]


def money(value: float) -> str:
    """Two decimals, thousands separated; a value that rounds to zero is '0.00', never '-0.00'."""
    return f"{0.0 if round(value, 2) == 0 else value:,.2f}"


def micros(value_us: float) -> str:
    """Microseconds with three decimals: the histograms' resolution is one nanosecond."""
    return f"{value_us:,.3f}"


def count(value: float) -> str:
    return f"{round(value):,d}"


def quantity(value: float) -> str:
    """Whole quantities without decimals, fractional ones with up to six."""
    if value == round(value):
        return f"{0.0 if value == 0 else value:,.0f}"
    return f"{value:,.6f}".rstrip("0")


def percent(value: float) -> str:
    return f"{value:.1%}"


FORMATTERS: Final = {
    "money": money,
    "count": count,
    "quantity": quantity,
    "percent": percent,
    "micros": micros,
}


def value(kind: ValueKind, number: float) -> str:
    """`number` formatted as a value of `kind` (the one entry point the tables use)."""
    return FORMATTERS[kind](number)


def _datetime(ts_ns: int, zone: ZoneInfo | None) -> datetime:
    # integer arithmetic: a float of ns since 1970 cannot hold microseconds exactly
    seconds, ns = divmod(ts_ns, NS_PER_S)
    stamp = datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=ns // 1000)
    return stamp if zone is None else stamp.astimezone(zone)


def local_time(ts_ns: int, zone: ZoneInfo) -> str:
    """'2012-06-21 09:30:00.015105 EDT': the exchange's wall clock, to the microsecond."""
    return _datetime(ts_ns, zone).strftime("%Y-%m-%d %H:%M:%S.%f %Z")


def utc_time(ts_ns: int) -> str:
    return _datetime(ts_ns, None).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def utc_offset(ts_ns: int, zone: ZoneInfo) -> str:
    """'EDT, UTC-04:00' for America/New_York in June; 'UTC' for UTC itself."""
    stamp = _datetime(ts_ns, zone)
    offset = stamp.strftime("%z")
    if offset in ("+0000", "") and stamp.tzname() in ("UTC", None):
        return "UTC"
    return f"{stamp.tzname()}, UTC{offset[:3]}:{offset[3:]}"


def duration(ns: int) -> str:
    """A window length the way people say it: '15 s', '2 min', '1 h'."""
    seconds = ns / NS_PER_S
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"
