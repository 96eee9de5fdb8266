"""Time buckets aligned in a time zone: hours, calendar days, ISO weeks (Monday 00:00), calendar months.

The storage layer computes an integer bucket key per event from the UTC offset in force (given as
constant-offset segments over the window); this module produces those segments, enumerates the
buckets of a window (dense series), and maps keys back to bucket start instants. DST days are 23
or 25 hours long because day buckets are local calendar days; a month is 28 to 31 local days, and
one holding a DST change is an hour shorter or longer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import importlib.resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.domain import OffsetSegment
from server.errors import InvalidArgument

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = dt.date(1970, 1, 1)
_FIRST_MONDAY = dt.date(1970, 1, 5)
_HOUR = dt.timedelta(hours=1)


def to_us(t: dt.datetime) -> int:
    delta = t - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


@functools.cache
def iana_zone_names() -> frozenset[str]:
    """The zone names of the IANA time zone database (the `tzdata` package's list, links such as
    `US/Eastern` included), less `Factory`, a placeholder without a place. What else a system's
    zoneinfo directory holds (`localtime`, `posixrules`, the `right/` and `posix/` copies) is no
    IANA name, though ZoneInfo would open it as a file."""
    names = importlib.resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8").split()
    return frozenset(names) - {"Factory"}


def zone(name: str, field: str = "time_zone") -> ZoneInfo:
    """The IANA zone `name` (default UTC), or InvalidArgument naming `field`."""
    if not name:
        name = "UTC"
    problem = f"unknown time zone {name[:64]!r}: use an IANA name such as UTC or Europe/Paris"
    if name not in iana_zone_names():
        raise InvalidArgument.field(field, problem)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument.field(field, problem) from None


def _offset_us(tz: ZoneInfo, t: dt.datetime) -> int:
    off = t.astimezone(tz).utcoffset()
    assert off is not None
    return int(off.total_seconds() * 1_000_000)


def _local_date_start(tz: ZoneInfo, d: dt.date) -> dt.datetime:
    """The first instant of local date `d`: local midnight, or the end of a DST gap at midnight."""
    # fold=0 resolves a nonexistent midnight with the offset before the gap, which lands exactly
    # on the transition instant: the first instant that belongs to `d`.
    return dt.datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)


@dataclasses.dataclass(frozen=True)
class BucketPlan:
    """The buckets of a window: their starts (UTC) and the key of each, as storage computes keys."""

    bucket: str
    tz: ZoneInfo
    starts: tuple[dt.datetime, ...]
    keys: tuple[int, ...]

    def index_of(self) -> dict[int, int]:
        return {k: i for i, k in enumerate(self.keys)}


def _hour_floor(tz: ZoneInfo, t: dt.datetime) -> dt.datetime:
    """Floor the local wall clock to the hour under the offset in force at t, back in UTC.

    This is what storage computes per event (the hour bucket key): the repeated hour of a
    fall-back night stays two distinct buckets.
    """
    off = dt.timedelta(microseconds=_offset_us(tz, t))
    wall = t.astimezone(UTC).replace(tzinfo=None) + off
    return (wall.replace(minute=0, second=0, microsecond=0) - off).replace(tzinfo=UTC)


def _transition(tz: ZoneInfo, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
    """The first instant in (lo, hi] whose UTC offset is that of `hi` (offsets differ at lo and hi)."""
    target = _offset_us(tz, hi)
    while hi - lo > dt.timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if _offset_us(tz, mid) == target:
            hi = mid
        else:
            lo = mid
    # Transitions fall on whole seconds.
    change = hi.replace(microsecond=0)
    if change <= lo:
        change += dt.timedelta(seconds=1)
    while _offset_us(tz, change - dt.timedelta(seconds=1)) == target:
        change -= dt.timedelta(seconds=1)
    return change


def bucket_start(bucket: str, tz: ZoneInfo, t: dt.datetime) -> dt.datetime:
    """The start (UTC) of the bucket holding instant `t`: its first instant."""
    if bucket == "hour":
        floor = _hour_floor(tz, t)
        if _offset_us(tz, floor) == _offset_us(tz, t):
            return floor
        # A shift that is not a whole hour (Lord Howe's 30 minutes) happened inside this local hour:
        # the bucket starts at the shift, not at a local o'clock that belongs to the previous bucket.
        return _transition(tz, floor, t)
    local = t.astimezone(tz)
    day = local.date()
    if bucket == "week":
        day -= dt.timedelta(days=day.weekday())
    elif bucket == "month":
        day = day.replace(day=1)
    return _local_date_start(tz, day)


def bucket_key(bucket: str, tz: ZoneInfo, start: dt.datetime) -> int:
    """The integer key storage computes for events of the bucket starting at `start`."""
    if bucket == "hour":
        return to_us(_hour_floor(tz, start))
    local_day = start.astimezone(tz).date()
    if bucket == "day":
        return (local_day - _EPOCH_DATE).days
    if bucket == "month":
        # The local day number of the month's first day (storage: functions.month_start_day).
        return (local_day.replace(day=1) - _EPOCH_DATE).days
    return (local_day - _FIRST_MONDAY).days // 7


def plan(
    bucket: str, tz: ZoneInfo, since: dt.datetime, until: dt.datetime, max_buckets: int
) -> tuple[BucketPlan, dt.datetime]:
    """Buckets covering [since, until), at most `max_buckets` of them.

    When the window needs more, `until` is kept and `since` moves forward to the start of the
    earliest bucket kept. Returns the plan and the `since` actually used.
    """
    if bucket == "hour":
        fast = _plan_utc_hours(tz, since, until, max_buckets)
        if fast is not None:
            return fast
    return _plan_walk(bucket, tz, since, until, max_buckets)


_HOUR_US = 3_600_000_000


def _plan_utc_hours(
    tz: ZoneInfo, since: dt.datetime, until: dt.datetime, max_buckets: int
) -> tuple[BucketPlan, dt.datetime] | None:
    """`plan` for hours when every offset of the window is a whole number of hours changing on
    whole hours (most zones, most of the time): local hours are then UTC hours, so the buckets are
    every UTC hour of the window, keyed by their start. None when that does not hold."""
    segments = offset_segments(tz, since, until)
    if any(seg.offset_us % _HOUR_US for seg in segments) or any(
        seg.start_us % _HOUR_US for seg in segments[1:]
    ):
        return None
    last = (to_us(until) - 1) // _HOUR_US * _HOUR_US
    first = max(to_us(since) // _HOUR_US * _HOUR_US, last - (max_buckets - 1) * _HOUR_US)
    keys = tuple(range(first, last + 1, _HOUR_US))
    starts = tuple(from_us(k) for k in keys)
    return BucketPlan("hour", tz, starts, keys), (since if starts[0] <= since else starts[0])


def _plan_walk(
    bucket: str, tz: ZoneInfo, since: dt.datetime, until: dt.datetime, max_buckets: int
) -> tuple[BucketPlan, dt.datetime]:
    """`plan` in general: from the last bucket back, one zone-aware step at a time."""
    last = bucket_start(bucket, tz, until - dt.timedelta(microseconds=1))
    first = bucket_start(bucket, tz, since)
    starts = [last]
    while len(starts) < max_buckets:
        prev = _previous_start(bucket, tz, starts[-1])
        if prev < first:
            break
        starts.append(prev)
    starts.reverse()
    used_since = since if starts[0] <= since else starts[0]
    keys = tuple(bucket_key(bucket, tz, s) for s in starts)
    return BucketPlan(bucket, tz, tuple(starts), keys), used_since


def _previous_start(bucket: str, tz: ZoneInfo, start: dt.datetime) -> dt.datetime:
    return bucket_start(bucket, tz, start - dt.timedelta(microseconds=1))


def offset_segments(tz: ZoneInfo, since: dt.datetime, until: dt.datetime) -> tuple[OffsetSegment, ...]:
    """Constant-UTC-offset pieces of [since, until): where the zone's offset changes (DST)."""
    segments = [OffsetSegment(to_us(since), _offset_us(tz, since))]
    # Offsets change at most a few times a year, never twice within a day: probe daily and bisect.
    step = dt.timedelta(hours=12)
    t = since
    while t < until:
        nxt = min(t + step, until)
        if _offset_us(tz, nxt) != segments[-1].offset_us:
            change = _transition(tz, t, nxt)
            segments.append(OffsetSegment(to_us(change), _offset_us(tz, change)))
        t = nxt
    return tuple(segments)
