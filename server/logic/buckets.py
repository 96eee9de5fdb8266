"""Time buckets aligned in a time zone: hours, calendar days, ISO weeks (Monday 00:00).

The storage layer computes an integer bucket key per event from the UTC offset in force (given as
constant-offset segments over the window); this module produces those segments, enumerates the
buckets of a window (dense series), and maps keys back to bucket start instants. DST days are 23
or 25 hours long because day buckets are local calendar days.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
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


def zone(name: str, field: str = "time_zone") -> ZoneInfo:
    """The IANA zone `name` (default UTC), or InvalidArgument naming `field`."""
    if not name:
        name = "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument.field(field, f"unknown IANA time zone {name!r}") from None


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


def bucket_start(bucket: str, tz: ZoneInfo, t: dt.datetime) -> dt.datetime:
    """The start (UTC) of the bucket holding instant `t`."""
    local = t.astimezone(tz)
    if bucket == "hour":
        off = local.utcoffset()
        assert off is not None
        # Floor the local wall clock to the hour under the offset in force at t, then back to UTC:
        # the repeated hour of a fall-back day stays two distinct buckets.
        wall = t.astimezone(UTC).replace(tzinfo=None) + off
        return (wall.replace(minute=0, second=0, microsecond=0) - off).replace(tzinfo=UTC)
    day = local.date()
    if bucket == "week":
        day -= dt.timedelta(days=day.weekday())
    return _local_date_start(tz, day)


def _next_start(bucket: str, tz: ZoneInfo, start: dt.datetime) -> dt.datetime:
    if bucket == "hour":
        return bucket_start("hour", tz, start + _HOUR)
    day = start.astimezone(tz).date()
    step = 7 if bucket == "week" else 1
    return _local_date_start(tz, day + dt.timedelta(days=step))


def bucket_key(bucket: str, tz: ZoneInfo, start: dt.datetime) -> int:
    """The integer key storage computes for events of the bucket starting at `start`."""
    if bucket == "hour":
        return to_us(start)
    local_day = start.astimezone(tz).date()
    if bucket == "day":
        return (local_day - _EPOCH_DATE).days
    return (local_day - _FIRST_MONDAY).days // 7


def plan(
    bucket: str, tz: ZoneInfo, since: dt.datetime, until: dt.datetime, max_buckets: int
) -> tuple[BucketPlan, dt.datetime]:
    """Buckets covering [since, until), at most `max_buckets` of them.

    When the window needs more, `until` is kept and `since` moves forward to the start of the
    earliest bucket kept. Returns the plan and the `since` actually used.
    """
    last = bucket_start(bucket, tz, until - dt.timedelta(microseconds=1))
    starts = [last]
    while len(starts) < max_buckets:
        prev = _previous_start(bucket, tz, starts[-1])
        if prev + dt.timedelta(microseconds=0) < bucket_start(bucket, tz, since):
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
    # Offsets change at most a few times a year; probe every 6 hours and bisect each change.
    step = dt.timedelta(hours=6)
    t = since
    while t < until:
        nxt = min(t + step, until)
        if _offset_us(tz, nxt) != segments[-1].offset_us:
            lo, hi = t, nxt
            while hi - lo > dt.timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if _offset_us(tz, mid) == segments[-1].offset_us:
                    lo = mid
                else:
                    hi = mid
            # Transitions fall on whole seconds.
            change = hi.replace(microsecond=0)
            while _offset_us(tz, change - dt.timedelta(seconds=1)) != segments[-1].offset_us:
                change -= dt.timedelta(seconds=1)
            segments.append(OffsetSegment(to_us(change), _offset_us(tz, change)))
        t = nxt
    return tuple(segments)
