"""Timestamps of log lines as UTC epoch seconds: zones, missing years, caching.

Log timestamps often carry no zone (``2015-10-18 18:01:47,978``), syslog's RFC 3164 stamps
carry no year (``Jun 14 15:16:01``) and some carry no date at all (``16:49:06.120``).
:class:`Clock` reads a match of a :class:`~ingest.logparse.stamps.StampLayout`:

* a stamp without a zone is read in the ``tz`` option's zone (IANA name, default UTC); a
  zone name is understood when it is UTC or GMT or an IANA name, else ``tz`` applies;
* a stamp without a year gets the ``year`` option when given; otherwise the year of the
  reference time (``--as-of``, else the file's modification time, else now), or the year
  before when that would put the line more than a day after the reference time — logs are
  not written in the future, so ``Dec 31`` read on ``Jan 2`` is last year's;
* a time of day alone is put on the reference time's date, or the day before when that
  would put it more than a minute after the reference time;
* a two-digit year is 20yy (19yy when that would be more than a year in the future);
* an epoch number is seconds, milliseconds, microseconds or nanoseconds, told by
  magnitude (2000-2100).

Parsing is the hot path of log ingest, so each distinct second-resolution stamp is parsed
once and cached; the fraction of a second is added separately.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ingest.logparse.stamps import CATALOGUE, StampLayout

MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
EPOCH_MIN, EPOCH_MAX = 946_684_800, 4_102_444_800  # 2000-01-01 .. 2100-01-01: plausible
_CACHE_MAX = 200_000


class BadTime(ValueError):
    """A timestamp that has the shape of one but is not a valid time."""


def zone(name: str | None) -> tzinfo:
    """The zone of the ``tz`` option (IANA name or UTC); ValueError names a bad one."""
    if not name or name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as "
                         "Europe/Berlin, or UTC)") from exc


class Clock:
    """Reads timestamps into UTC epoch seconds (see the module doc). ``layout``: the
    ``time-format`` option's layout, tried before the catalogue."""

    def __init__(self, tz: tzinfo, reference: datetime, year: int | None = None,
                 layout: StampLayout | None = None) -> None:
        self.tz = tz
        self.reference = reference.astimezone(UTC)
        self.year = year
        self.layout = layout
        self.layouts = ((layout,) if layout else ()) + CATALOGUE
        self._last = self.layouts[0]  # stamps of one input share a layout: tried first
        self._cache: dict[tuple[str, str], float] = {}

    def stamp(self, text: str) -> float:
        """Epoch seconds of a whole stamp: the ``time-format`` layout, else the first
        catalogue layout that matches all of it (or an epoch number); BadTime if none."""
        text = text.strip()
        if text.isdigit() and self.layout is None:
            return self.epoch(int(text))
        m = self._last.regex.fullmatch(text)
        if m is not None:
            return self.from_match(self._last, m)
        for layout in self.layouts:
            m = layout.regex.fullmatch(text)
            if m is not None:
                self._last = layout
                return self.from_match(layout, m)
        if self.layout is not None:
            raise BadTime(f"timestamp {text!r} does not match the time format "
                          f"{self.layout.pattern!r}")
        raise BadTime(f"timestamp {text!r} is not in a known layout (give the option "
                      "time-format)")

    def from_match(self, layout: StampLayout, m: re.Match[str]) -> float:
        """Epoch seconds of a match of ``layout`` (cached per second); BadTime if the
        parts are no valid time."""
        text = m.group(0)
        f = m.group("f") if "f" in layout.regex.groupindex else None
        if f:
            start, end = m.span("f")
            key = (layout.name, text[:start - m.start()] + text[end - m.start():])
        else:
            key = (layout.name, text)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._parse(m.groupdict(), text)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = cached
        return cached + float("0." + f) if f else cached

    def epoch(self, value: float) -> float:
        """Epoch seconds, milliseconds, microseconds or nanoseconds, told by magnitude."""
        for scale in (1, 1e3, 1e6, 1e9):
            if EPOCH_MIN <= value / scale < EPOCH_MAX:
                return value / scale
        raise BadTime(f"number {value!r} is not an epoch time between 2000 and 2100")

    def _parse(self, g: dict[str, str | None], text: str) -> float:
        """Whole seconds of a stamp's parts (the fraction is added by the caller)."""
        if g.get("ep"):
            return self.epoch(int(g["ep"] or 0))
        try:
            month = _month(g)
            h = int(g.get("h") or 0)
            ap = (g.get("ap") or "").lower()
            if ap:
                if not 1 <= h <= 12:
                    raise ValueError(f"hour {h} is not a 12-hour clock hour")
                h = h % 12 + (12 if ap == "pm" else 0)
            hms = (h, int(g.get("mi") or 0), int(g.get("s") or 0))
            tz = self._zone(g)
            y = g.get("y")
            if g.get("d") is None and g.get("doy") is None:
                return self._time_only(*hms, tz)
            if y is None:
                return self._yearless(month, int(g.get("d") or 1), *hms, tz)
            year = self._full_year(y)
            if g.get("doy"):
                day = datetime(year, 1, 1, *hms, tzinfo=tz) + timedelta(
                    days=int(g["doy"] or 1) - 1)
                if day.year != year:
                    raise ValueError(f"day of year {g['doy']} is past the year's end")
                return day.timestamp()
            return datetime(year, month, int(g.get("d") or 1), *hms, tzinfo=tz).timestamp()
        except ValueError as exc:
            raise BadTime(f"timestamp {text!r} is not a valid time: {exc}") from exc

    def _zone(self, g: dict[str, str | None]) -> tzinfo:
        z = g.get("z")
        if z:
            return _offset(z)
        zn = g.get("zn")
        if zn:
            try:
                return zone(zn)
            except ValueError:
                return self.tz  # an abbreviation such as CST is ambiguous: the tz option
        return self.tz

    def _full_year(self, y: str) -> int:
        if len(y) != 2:
            return int(y)
        year = 2000 + int(y)
        return year if year <= self.reference.year + 1 else year - 100

    def _yearless(self, month: int, day: int, h: int, mi: int, s: int, tz: tzinfo
                  ) -> float:
        if self.year is not None:
            return datetime(self.year, month, day, h, mi, s, tzinfo=tz).timestamp()
        ref = self.reference.astimezone(tz)
        limit = self.reference + timedelta(days=1)
        for year in (ref.year, ref.year - 1, ref.year - 2, ref.year - 3, ref.year - 4):
            try:  # Feb 29 exists only in leap years: look back until it does
                dt = datetime(year, month, day, h, mi, s, tzinfo=tz)
            except ValueError:
                continue
            if dt <= limit:
                return dt.timestamp()
        raise ValueError(f"day {month:02d}-{day:02d} exists in no recent year")

    def _time_only(self, h: int, mi: int, s: int, tz: tzinfo) -> float:
        ref = self.reference.astimezone(tz)
        dt = datetime(ref.year, ref.month, ref.day, h, mi, s, tzinfo=tz)
        if dt > self.reference + timedelta(minutes=1):
            dt -= timedelta(days=1)
        return dt.timestamp()


def _month(g: dict[str, str | None]) -> int:
    mon = g.get("mon")
    if mon:
        month = MONTHS.get(mon[:3].lower())
        if month is None:
            raise ValueError(f"unknown month {mon!r}")
        return month
    return int(g.get("mo") or 1)


def _offset(z: str) -> tzinfo:
    if z in ("Z", "z"):
        return UTC
    sign = 1 if z[0] == "+" else -1
    digits = z[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return timezone(sign * offset)
