"""Dates, durations and numbers written the way the reader's language writes them (Babel).

Every page formats through these helpers, never with ``strftime`` or f-string precision, so a
change of language changes every date and number on screen.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from babel import Locale, UnknownLocaleError
from babel.dates import LOCALTZ
from babel.dates import format_datetime as _babel_datetime
from babel.dates import format_time as _babel_time
from babel.dates import format_timedelta as _babel_timedelta
from babel.lists import format_list
from babel.numbers import format_decimal, format_percent, format_scientific
from babel.units import format_unit

from studio.i18n import current_language

EMPTY = "—"


def babel_locale() -> Locale:
    """The Babel locale for the studio's current language (English when unknown)."""
    try:
        return Locale.parse(current_language())
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def format_datetime(dt: datetime | None, *, length: str = "medium") -> str:
    """A point in time in the server's time zone: ``Nov 22, 2026, 11:07:01 AM``."""
    if dt is None:
        return EMPTY
    return _babel_datetime(_aware(dt), length, tzinfo=LOCALTZ, locale=babel_locale())


def format_time(dt: datetime | None) -> str:
    """A time of day (log lines): ``11:07:01 AM``."""
    if dt is None:
        return EMPTY
    return _babel_time(_aware(dt), "medium", tzinfo=LOCALTZ, locale=babel_locale())


def format_relative(dt: datetime | None, *, now: datetime | None = None) -> str:
    """How long ago (or from now): ``5 seconds ago``."""
    if dt is None:
        return EMPTY
    delta = _aware(dt) - (now or datetime.now(UTC))
    return _babel_timedelta(delta, add_direction=True, threshold=1.0, locale=babel_locale())


def format_duration(seconds: float | timedelta | None) -> str:
    """A span of time with up to two units: ``2 min 5 sec``, ``1 hr 2 min``, ``0.4 sec``."""
    if seconds is None:
        return EMPTY
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    if not math.isfinite(seconds):
        return EMPTY
    loc = babel_locale()
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        value = round(seconds, 1)
        return format_unit(value, "duration-second", length="short", locale=loc,
                           format="0.#")
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "duration-day"), (hours, "duration-hour"), (minutes, "duration-minute"),
             (secs, "duration-second")]
    first = next(i for i, (n, _) in enumerate(units) if n)
    parts = [format_unit(n, unit, length="short", locale=loc)
             for n, unit in units[first:first + 2] if n]
    return format_list(parts, style="unit-narrow", locale=loc)


def format_number(x: float | int | None, *, digits: int = 3) -> str:
    """A number with the locale's separators; tiny values (learning rates) in scientific form."""
    if x is None:
        return EMPTY
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    loc = babel_locale()
    if isinstance(x, int):
        return format_decimal(x, locale=loc)
    if x != 0 and abs(x) < 10 ** -digits:
        return format_scientific(x, format="0.##E0", locale=loc)
    return format_decimal(x, format=f"#,##0.{'#' * digits}" if digits else "#,##0", locale=loc)


def format_percent_value(fraction: float | None) -> str:
    """A fraction 0..1 as a percentage: ``42%``."""
    if fraction is None:
        return EMPTY
    return format_percent(fraction, locale=babel_locale())
