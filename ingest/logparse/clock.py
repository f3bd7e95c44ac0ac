"""Timestamps of log lines as UTC epoch seconds: zones, missing years, caching.

Log timestamps often carry no zone (``2015-10-18 18:01:47,978``) and syslog's RFC 3164
stamps carry no year either (``Jun 14 15:16:01``). :class:`Clock` reads them:

* a stamp without a zone is read in the ``tz`` option's zone (IANA name, default UTC);
* a stamp without a year gets the ``year`` option when given; otherwise the year of the
  reference time (``--as-of``, else the file's modification time, else now), or the year
  before when that would put the line more than a day after the reference time — logs are
  not written in the future, so ``Dec 31`` read on ``Jan 2`` is last year's.

Parsing is the hot path of log ingest, so each distinct second-resolution stamp is parsed
once and cached; the fraction of a second is added separately.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
EPOCH_MIN, EPOCH_MAX = 946_684_800, 4_102_444_800  # 2000-01-01 .. 2100-01-01: plausible
_CACHE_MAX = 200_000

# One pattern per accepted stamp layout; groups: y (2 or 4 digits, absent = no year),
# mo (number or English abbreviation), d, h, mi, s, f (fraction), z (zone).
_STAMPS = [
    # ISO 8601 / log4j: 2015-10-18 18:01:47,978 ; 2024-05-01T10:00:00.5+02:00 ; ...Z
    re.compile(r"(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)[T ](?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)"
               r"(?:[.,](?P<f>\d+))?\s?(?P<z>Z|[+-]\d\d:?\d\d)?"),
    # yy/MM/dd HH:mm:ss and yyyy/MM/dd HH:mm:ss (log4j's ISO-ordered short form)
    re.compile(r"(?P<y>\d\d(?:\d\d)?)/(?P<mo>\d\d)/(?P<d>\d\d)[T ](?P<h>\d\d):(?P<mi>\d\d)"
               r":(?P<s>\d\d)(?:[.,](?P<f>\d+))?"),
    # yyMMdd HHmmss (compact)
    re.compile(r"(?P<y>\d\d)(?P<mo>\d\d)(?P<d>\d\d) (?P<h>\d\d)(?P<mi>\d\d)(?P<s>\d\d)"),
    # MM-dd HH:mm:ss.SSS (Android logcat; no year)
    re.compile(r"(?P<mo>\d\d)-(?P<d>\d\d) (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)"
               r"(?:[.,](?P<f>\d+))?"),
    # Mmm dd HH:mm:ss (RFC 3164 syslog; no year)
    re.compile(r"(?P<mo>[A-Z][a-z]{2}) {1,2}(?P<d>\d{1,2}) (?P<h>\d\d):(?P<mi>\d\d)"
               r":(?P<s>\d\d)(?:[.,](?P<f>\d+))?"),
    # yyyy-MM-dd-HH.mm.ss.ffffff (IBM style)
    re.compile(r"(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)-(?P<h>\d\d)\.(?P<mi>\d\d)\.(?P<s>\d\d)"
               r"(?:\.(?P<f>\d+))?"),
]


class BadTime(ValueError):
    """A timestamp that has the shape of one but is not a valid time."""


def zone(name: str | None) -> tzinfo:
    """The zone of the ``tz`` option (IANA name or UTC); ValueError names a bad one."""
    if not name or name.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as "
                         "Europe/Berlin, or UTC)") from exc


class Clock:
    """Reads the timestamp layouts above into UTC epoch seconds (see the module doc)."""

    def __init__(self, tz: tzinfo, reference: datetime, year: int | None = None) -> None:
        self.tz = tz
        self.reference = reference.astimezone(UTC)
        self.year = year
        self._cache: dict[str, float] = {}

    def stamp(self, text: str) -> float:
        """Epoch seconds of a whole stamp in one of the accepted layouts, or BadTime."""
        head, frac = _split_fraction(text)
        cached = self._cache.get(head)
        if cached is None:
            cached = self._parse(head)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[head] = cached
        return cached + frac

    def epoch(self, value: float) -> float:
        """Epoch seconds, milliseconds, microseconds or nanoseconds, told by magnitude."""
        for scale in (1, 1e3, 1e6, 1e9):
            if EPOCH_MIN <= value / scale < EPOCH_MAX:
                return value / scale
        raise BadTime(f"number {value!r} is not an epoch time between 2000 and 2100")

    def _parse(self, text: str) -> float:
        if text.isdigit():
            return self.epoch(int(text))
        for rx in _STAMPS:
            m = rx.fullmatch(text)
            if m:
                return self._from_parts(m.groupdict(), text)
        raise BadTime(f"timestamp {text!r} is not in an accepted layout")

    def _from_parts(self, g: dict[str, str | None], text: str) -> float:
        mo = g["mo"] or ""
        month = MONTHS.get(mo) if not mo.isdigit() else int(mo)
        try:
            if month is None:
                raise ValueError(f"unknown month {mo!r}")
            f = g.get("f")
            frac = float("0." + f) if f else 0.0
            y = g.get("y")
            fields = (month, int(g["d"] or 0), int(g["h"] or 0), int(g["mi"] or 0),
                      int(g["s"] or 0))
            if y is None:
                return self._yearless(*fields) + frac
            year = int(y) + (2000 if len(y) == 2 else 0)
            dt = datetime(year, *fields)
            z = g.get("z")
            if z:
                return _with_offset(dt, z).timestamp() + frac
            return dt.replace(tzinfo=self.tz).timestamp() + frac
        except ValueError as exc:
            raise BadTime(f"timestamp {text!r} is not a valid time: {exc}") from exc

    def _yearless(self, month: int, day: int, h: int, mi: int, s: int) -> float:
        if self.year is not None:
            return datetime(self.year, month, day, h, mi, s, tzinfo=self.tz).timestamp()
        ref = self.reference.astimezone(self.tz)
        limit = self.reference + timedelta(days=1)
        for year in (ref.year, ref.year - 1, ref.year - 2, ref.year - 3, ref.year - 4):
            try:  # Feb 29 exists only in leap years: look back until it does
                dt = datetime(year, month, day, h, mi, s, tzinfo=self.tz)
            except ValueError:
                continue
            if dt <= limit:
                return dt.timestamp()
        raise ValueError(f"day {month:02d}-{day:02d} exists in no recent year")


def _split_fraction(text: str) -> tuple[str, float]:
    """``'18:01:47,978'`` -> ``('18:01:47', 0.978)``; the zone suffix stays in the head."""
    m = _FRACTION.search(text)
    if not m:
        return text, 0.0
    return text[:m.start()] + text[m.end():], float("0." + m.group(1))


_FRACTION = re.compile(r"(?<=:\d\d)[.,](\d+)")


def _with_offset(dt: datetime, z: str) -> datetime:
    if z in ("Z", "z"):
        return dt.replace(tzinfo=UTC)
    sign = 1 if z[0] == "+" else -1
    digits = z[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return dt.replace(tzinfo=timezone(sign * offset))
