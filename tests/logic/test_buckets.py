"""Unit tests of server/logic/buckets.py: bucket starts, window plans (DST days of 23/25 hours, the
cap), and the constant-offset segments handed to storage.

Expected instants are written out by hand (UTC) or computed here with plain zoneinfo.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from server.domain import OffsetSegment
from server.errors import InvalidArgument
from server.logic import buckets

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
UTC_ZONE = ZoneInfo("UTC")
H = dt.timedelta(hours=1)
US = dt.timedelta(microseconds=1)


def z(text: str) -> dt.datetime:
    """'2026-03-29T01:00' (UTC, seconds and fractions allowed) -> an aware UTC datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# bucket_start


@pytest.mark.parametrize(
    ("tz", "bucket", "instant", "expected"),
    [
        # UTC: plain flooring; 2026-03-11 is a Wednesday, its ISO week starts Monday 2026-03-09.
        (UTC_ZONE, "hour", "2026-03-11T13:45:12.500001", "2026-03-11T13:00"),
        (UTC_ZONE, "hour", "2026-03-11T13:00", "2026-03-11T13:00"),
        (UTC_ZONE, "day", "2026-03-11T23:59:59.999999", "2026-03-11T00:00"),
        (UTC_ZONE, "day", "2026-03-11T00:00", "2026-03-11T00:00"),
        (UTC_ZONE, "week", "2026-03-11T13:45", "2026-03-09T00:00"),
        (UTC_ZONE, "week", "2026-03-09T00:00", "2026-03-09T00:00"),
        (UTC_ZONE, "week", "2026-03-08T23:59:59.999999", "2026-03-02T00:00"),  # Sunday: previous week
        # Europe/Paris in winter (+01:00): local midnight is 23:00Z the day before.
        (PARIS, "hour", "2026-03-11T13:45", "2026-03-11T13:00"),
        (PARIS, "day", "2026-03-11T23:30", "2026-03-11T23:00"),  # already 00:30 on the 12th in Paris
        (PARIS, "day", "2026-03-11T22:59:59.999999", "2026-03-10T23:00"),
        (PARIS, "week", "2026-03-15T23:00", "2026-03-15T23:00"),  # Monday 16th 00:00 in Paris
        (PARIS, "week", "2026-03-15T22:59:59.999999", "2026-03-08T23:00"),
        # Europe/Paris spring forward, Sunday 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z).
        (PARIS, "day", "2026-03-29T12:00", "2026-03-28T23:00"),
        (PARIS, "day", "2026-03-29T21:59:59.999999", "2026-03-28T23:00"),
        (PARIS, "day", "2026-03-29T22:00", "2026-03-29T22:00"),  # Monday 30th 00:00 CEST
        (PARIS, "hour", "2026-03-29T00:59:59", "2026-03-29T00:00"),  # 01:59:59 CET
        (PARIS, "hour", "2026-03-29T01:00", "2026-03-29T01:00"),  # 03:00 CEST
        (PARIS, "week", "2026-03-29T21:00", "2026-03-22T23:00"),  # Sunday: week of Monday 23rd (CET)
        (PARIS, "week", "2026-03-29T22:00", "2026-03-29T22:00"),  # Monday 30th 00:00 CEST
        # Europe/Paris fall back, Sunday 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z): 02:xx twice.
        (PARIS, "day", "2026-10-25T12:00", "2026-10-24T22:00"),
        (PARIS, "day", "2026-10-25T22:59:59.999999", "2026-10-24T22:00"),
        (PARIS, "day", "2026-10-25T23:00", "2026-10-25T23:00"),
        (PARIS, "hour", "2026-10-25T00:30", "2026-10-25T00:00"),  # 02:30 CEST
        (PARIS, "hour", "2026-10-25T01:30", "2026-10-25T01:00"),  # 02:30 CET: a distinct bucket
        (PARIS, "week", "2026-10-25T12:00", "2026-10-18T22:00"),
        (PARIS, "week", "2026-10-25T23:00", "2026-10-25T23:00"),  # Monday 26th 00:00 CET
        # America/New_York: spring forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z),
        # fall back 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z).
        (NEW_YORK, "hour", "2026-03-08T06:59:59.999999", "2026-03-08T06:00"),  # 01:59 EST
        (NEW_YORK, "hour", "2026-03-08T07:00", "2026-03-08T07:00"),  # 03:00 EDT
        (NEW_YORK, "day", "2026-03-08T12:00", "2026-03-08T05:00"),
        (NEW_YORK, "day", "2026-03-09T03:59:59.999999", "2026-03-08T05:00"),
        (NEW_YORK, "day", "2026-03-09T04:00", "2026-03-09T04:00"),
        (NEW_YORK, "week", "2026-03-09T03:00", "2026-03-02T05:00"),  # Sunday 23:00 EDT
        (NEW_YORK, "week", "2026-03-09T04:00", "2026-03-09T04:00"),  # Monday 00:00 EDT
        (NEW_YORK, "hour", "2026-11-01T05:30", "2026-11-01T05:00"),  # 01:30 EDT
        (NEW_YORK, "hour", "2026-11-01T06:30", "2026-11-01T06:00"),  # 01:30 EST
        (NEW_YORK, "day", "2026-11-02T04:59:59.999999", "2026-11-01T04:00"),
        (NEW_YORK, "day", "2026-11-02T05:00", "2026-11-02T05:00"),
        (NEW_YORK, "week", "2026-11-01T12:00", "2026-10-26T04:00"),
        # Asia/Kolkata (+05:30, no DST): hours start at :30 UTC, days at 18:30Z.
        (KOLKATA, "hour", "2026-01-15T10:10", "2026-01-15T09:30"),  # 15:40 IST
        (KOLKATA, "hour", "2026-01-15T10:30", "2026-01-15T10:30"),
        (KOLKATA, "day", "2026-01-15T20:00", "2026-01-15T18:30"),  # 01:30 IST on the 16th
        (KOLKATA, "day", "2026-01-15T18:29:59.999999", "2026-01-14T18:30"),
        (KOLKATA, "week", "2026-01-18T19:00", "2026-01-18T18:30"),  # Monday 19th 00:30 IST
        (KOLKATA, "week", "2026-01-18T18:00", "2026-01-11T18:30"),  # still Sunday 18th in IST
        # Australia/Lord_Howe: +10:30 standard, +11 summer (a 30-minute DST).
        (LORD_HOWE, "hour", "2026-06-01T03:10", "2026-06-01T02:30"),  # 13:40 +10:30
        (LORD_HOWE, "hour", "2026-01-10T03:10", "2026-01-10T03:00"),  # 14:10 +11
        (LORD_HOWE, "day", "2026-06-01T03:10", "2026-05-31T13:30"),
        (LORD_HOWE, "day", "2026-01-10T03:10", "2026-01-09T13:00"),
        # DST ends Sunday 2026-04-05 02:00 (+11) -> 01:30 (+10:30) at 15:00Z: a 24.5-hour day.
        (LORD_HOWE, "day", "2026-04-05T13:29:59.999999", "2026-04-04T13:00"),
        (LORD_HOWE, "day", "2026-04-05T13:30", "2026-04-05T13:30"),
        (LORD_HOWE, "hour", "2026-04-04T14:59:59", "2026-04-04T14:00"),  # 01:59:59 +11
        (LORD_HOWE, "hour", "2026-04-04T15:30", "2026-04-04T15:30"),  # 02:00 +10:30
        # DST starts Sunday 2026-10-04 02:00 (+10:30) -> 02:30 (+11) at 15:30Z: a 23.5-hour day.
        (LORD_HOWE, "day", "2026-10-04T12:59:59.999999", "2026-10-03T13:30"),
        (LORD_HOWE, "day", "2026-10-04T13:00", "2026-10-04T13:00"),
        (LORD_HOWE, "hour", "2026-10-03T15:29:59", "2026-10-03T14:30"),  # 01:59:59 +10:30
        (LORD_HOWE, "hour", "2026-10-03T16:00", "2026-10-03T16:00"),  # 03:00 +11
        (LORD_HOWE, "week", "2026-04-05T12:00", "2026-03-29T13:00"),  # Sunday 5th: week of Monday 30th (+11)
        (LORD_HOWE, "week", "2026-04-05T13:30", "2026-04-05T13:30"),  # Monday 6th 00:00 +10:30
    ],
)
def test_bucket_start(tz: ZoneInfo, bucket: str, instant: str, expected: str) -> None:
    t = z(instant)
    start = buckets.bucket_start(bucket, tz, t)
    assert start == z(expected)
    assert start.utcoffset() == dt.timedelta(0)
    # A non-UTC aware input means the same instant.
    assert buckets.bucket_start(bucket, tz, t.astimezone(tz)) == z(expected)


def _independent_start(bucket: str, tz: ZoneInfo, t: dt.datetime) -> dt.datetime:
    """Reference: hour = local wall clock floored under the offset in force; day/week = local midnight."""
    local = t.astimezone(tz)
    if bucket == "hour":
        off = local.utcoffset()
        assert off is not None
        floored = (t.astimezone(UTC) + off).replace(minute=0, second=0, microsecond=0)
        return floored - off
    day = local.date()
    if bucket == "week":
        day = day - dt.timedelta(days=day.isoweekday() - 1)
    midnight = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    return midnight.astimezone(UTC)


@pytest.mark.parametrize("tz", [UTC_ZONE, PARIS, NEW_YORK, KOLKATA], ids=str)
@pytest.mark.parametrize("bucket", ["hour", "day", "week"])
def test_bucket_start_is_a_floor_around_transitions(tz: ZoneInfo, bucket: str) -> None:
    """Every 7 minutes over the DST weeks of 2026: start <= t, start is a bucket start itself, the
    local wall clock of the start is aligned, and the value matches the zoneinfo reference."""
    for first in (z("2026-03-05T00:00"), z("2026-03-26T00:00"), z("2026-10-22T00:00"), z("2026-10-29T00:00")):
        t = first
        while t < first + dt.timedelta(days=8):
            start = buckets.bucket_start(bucket, tz, t)
            assert start <= t
            assert buckets.bucket_start(bucket, tz, start) == start
            assert start == _independent_start(bucket, tz, t), t
            local = start.astimezone(tz)
            assert (local.minute, local.second, local.microsecond) == (0, 0, 0)
            if bucket != "hour":
                assert (local.hour, local.minute) == (0, 0)
            if bucket == "week":
                assert local.isoweekday() == 1
            t += dt.timedelta(minutes=7)


# Regression: in a zone whose DST shift is 30 minutes (Australia/Lord_Howe), flooring the wall
# clock alone gives a start inside the *previous* bucket: after the fall back at 2026-04-04T15:00Z
# (02:00 +11 -> 01:30 +10:30) the bucket 15:00Z..15:30Z was reported as starting at 14:30Z, an
# instant of the 14:00Z bucket; after the spring forward at 2026-10-03T15:30Z the bucket
# 15:30Z..16:00Z as starting at 15:00Z. A bucket's start is its first instant: the transition.
@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        ("2026-04-04T15:00", "2026-04-04T15:00"),  # 01:30 +10:30, the first instant after the fall back
        ("2026-04-04T15:10", "2026-04-04T15:00"),
        ("2026-04-04T15:29:59.999999", "2026-04-04T15:00"),
        ("2026-10-03T15:30", "2026-10-03T15:30"),  # 02:30 +11, the first instant after the spring forward
        ("2026-10-03T15:40", "2026-10-03T15:30"),
        ("2026-10-03T15:59:59.999999", "2026-10-03T15:30"),
    ],
)
def test_bucket_start_hour_half_hour_dst_start_belongs_to_its_bucket(instant: str, expected: str) -> None:
    t = z(instant)
    start = buckets.bucket_start("hour", LORD_HOWE, t)
    assert buckets.bucket_start("hour", LORD_HOWE, start) == start, "the start lies in another bucket"
    assert start == z(expected)


def test_lord_howe_hour_buckets_partition_the_transition_nights() -> None:
    """Around a 30-minute shift, every 5 minutes: starts are non-decreasing, each start is in its
    own bucket, and the repeated half hour of the fall back is a bucket of its own."""
    for first, expected in (
        # 01:00 +11 (14:00Z), then 01:30..02:00 +10:30 (15:00Z..15:30Z), then 02:00 +10:30 (15:30Z).
        ("2026-04-04T12:00", ["12:00", "13:00", "14:00", "15:00", "15:30", "16:30", "17:30"]),
        # 01:00 +10:30 (14:30Z), 02:30..03:00 +11 (15:30Z..16:00Z), then 03:00 +11 (16:00Z).
        ("2026-10-03T12:00", ["11:30", "12:30", "13:30", "14:30", "15:30", "16:00", "17:00"]),
    ):
        seen: list[dt.datetime] = []
        t = z(first)
        while t < z(first) + 6 * H:
            start = buckets.bucket_start("hour", LORD_HOWE, t)
            assert start <= t
            assert buckets.bucket_start("hour", LORD_HOWE, start) == start
            if not seen or seen[-1] != start:
                seen.append(start)
            t += dt.timedelta(minutes=5)
        assert seen == sorted(set(seen))
        assert [s.strftime("%H:%M") for s in seen] == expected


def test_plan_lord_howe_hours_keys_match_the_storage_formula() -> None:
    """Hour keys are what storage computes per event: floor(local wall clock) - offset, in UTC us."""
    for since, until in (("2026-04-04T12:00", "2026-04-04T18:00"), ("2026-10-03T12:00", "2026-10-03T18:00")):
        p, used = buckets.plan("hour", LORD_HOWE, z(since), z(until), 1000)
        assert used == z(since)
        t = z(since)
        while t < z(until):
            local = t.astimezone(LORD_HOWE)
            off = local.utcoffset()
            assert off is not None
            floored = (t + off).replace(minute=0, second=0, microsecond=0) - off
            i = p.index_of()[buckets.to_us(floored)]
            assert p.starts[i] <= t and (i + 1 == len(p.starts) or t < p.starts[i + 1])
            t += dt.timedelta(minutes=5)


def test_zone_defaults_to_utc_and_rejects_unknown_names() -> None:
    assert buckets.zone("") == ZoneInfo("UTC")
    assert buckets.zone("Europe/Paris") == PARIS
    for bad in ("Mars/Olympus_Mons", "../../etc/passwd", "Europe/", "not a zone"):
        with pytest.raises(InvalidArgument) as info:
            buckets.zone(bad)
        assert info.value.violations[0].field == "time_zone"
    with pytest.raises(InvalidArgument) as info:
        buckets.zone("Nowhere/Land", field="tz")
    assert info.value.violations[0].field == "tz"


def test_us_conversions_round_trip() -> None:
    for text in (
        "1970-01-01T00:00",
        "2026-03-29T01:00:00.000001",
        "1969-12-31T23:59:59.999999",
        "2100-01-01T00:00",
    ):
        t = z(text)
        assert buckets.from_us(buckets.to_us(t)) == t
    assert buckets.to_us(z("1970-01-01T00:00:01")) == 1_000_000
    assert buckets.to_us(z("1969-12-31T23:59:59.999999")) == -1


# --------------------------------------------------------------------------------------------
# plan


def _durations(starts: tuple[dt.datetime, ...], end: dt.datetime) -> list[dt.timedelta]:
    bounds = [*starts, end]
    return [b - a for a, b in zip(bounds, bounds[1:], strict=False)]


def test_plan_paris_days_over_spring_forward_and_fall_back() -> None:
    p, since = buckets.plan("day", PARIS, z("2026-03-27T23:00"), z("2026-03-30T22:00"), 1000)
    assert since == z("2026-03-27T23:00")
    assert p.starts == (z("2026-03-27T23:00"), z("2026-03-28T23:00"), z("2026-03-29T22:00"))
    assert _durations(p.starts, z("2026-03-30T22:00")) == [24 * H, 23 * H, 24 * H]
    assert [s.astimezone(PARIS).date().isoformat() for s in p.starts] == [
        "2026-03-28",
        "2026-03-29",
        "2026-03-30",
    ]
    # Day keys: local day numbers since 1970-01-01.
    first = (dt.date(2026, 3, 28) - dt.date(1970, 1, 1)).days
    assert p.keys == (first, first + 1, first + 2)
    assert p.index_of() == {first: 0, first + 1: 1, first + 2: 2}

    p, _ = buckets.plan("day", PARIS, z("2026-10-24T22:00"), z("2026-10-26T23:00"), 1000)
    assert p.starts == (z("2026-10-24T22:00"), z("2026-10-25T23:00"))
    assert _durations(p.starts, z("2026-10-26T23:00")) == [25 * H, 24 * H]


@pytest.mark.parametrize(
    ("day_start", "day_end", "count"),
    [
        ("2026-03-28T23:00", "2026-03-29T22:00", 23),  # spring forward: 02:00..03:00 does not exist
        ("2026-10-24T22:00", "2026-10-25T23:00", 25),  # fall back: 02:00..03:00 happens twice
        ("2026-03-27T23:00", "2026-03-28T23:00", 24),
    ],
)
def test_plan_paris_hours_of_a_dst_day(day_start: str, day_end: str, count: int) -> None:
    p, since = buckets.plan("hour", PARIS, z(day_start), z(day_end), 1000)
    assert since == z(day_start)
    assert len(p.starts) == count
    assert len(set(p.starts)) == count
    assert all(d == H for d in _durations(p.starts, z(day_end)))
    assert p.starts[0] == z(day_start)
    # Hour keys are the bucket's UTC start in microseconds.
    assert p.keys == tuple(buckets.to_us(s) for s in p.starts)
    local_hours = [s.astimezone(PARIS).hour for s in p.starts]
    if count == 25:
        assert local_hours == [0, 1, 2, 2, *range(3, 24)]
    elif count == 23:
        assert local_hours == [0, 1, *range(3, 24)]


def test_plan_new_york_hours_and_days() -> None:
    # The local day 2026-11-01 in New York: 25 hours, 01:00 twice.
    p, _ = buckets.plan("hour", NEW_YORK, z("2026-11-01T04:00"), z("2026-11-02T05:00"), 1000)
    assert len(p.starts) == 25
    assert [s.astimezone(NEW_YORK).hour for s in p.starts][:4] == [0, 1, 1, 2]
    p, _ = buckets.plan("day", NEW_YORK, z("2026-03-07T05:00"), z("2026-03-10T04:00"), 1000)
    assert p.starts == (z("2026-03-07T05:00"), z("2026-03-08T05:00"), z("2026-03-09T04:00"))
    assert _durations(p.starts, z("2026-03-10T04:00")) == [24 * H, 23 * H, 24 * H]


def test_plan_weeks_start_monday_local_midnight() -> None:
    # Paris: the week of Monday 2026-03-23 holds the spring forward (167 h), the one of Monday
    # 2026-10-19 the fall back (169 h).
    p, _ = buckets.plan("week", PARIS, z("2026-03-20T10:00"), z("2026-04-02T10:00"), 1000)
    assert p.starts == (z("2026-03-15T23:00"), z("2026-03-22T23:00"), z("2026-03-29T22:00"))
    assert _durations(p.starts, z("2026-04-05T22:00")) == [168 * H, 167 * H, 168 * H]
    assert all(s.astimezone(PARIS).isoweekday() == 1 for s in p.starts)
    first = (dt.date(2026, 3, 16) - dt.date(1970, 1, 5)).days // 7
    assert p.keys == (first, first + 1, first + 2)
    p, _ = buckets.plan("week", PARIS, z("2026-10-19T00:00"), z("2026-10-27T00:00"), 1000)
    assert p.starts == (z("2026-10-18T22:00"), z("2026-10-25T23:00"))
    assert p.starts[1] - p.starts[0] == 169 * H
    # Kolkata weeks start Sunday 18:30Z.
    p, _ = buckets.plan("week", KOLKATA, z("2026-01-14T00:00"), z("2026-01-20T00:00"), 1000)
    assert p.starts == (z("2026-01-11T18:30"), z("2026-01-18T18:30"))


def test_plan_months_are_calendar_months_in_the_zone() -> None:
    # Paris, 2026-01-15 .. 2026-11-15: months of 31, 28, 31 (minus the spring-forward hour), 30
    # days..., October with the fall-back hour; each starts on the 1st at local midnight.
    p, used = buckets.plan("month", PARIS, z("2026-01-15T00:00"), z("2026-11-15T00:00"), 1000)
    assert used == z("2026-01-15T00:00")
    assert [s.astimezone(PARIS).date().isoformat() for s in p.starts] == [
        f"2026-{m:02d}-01" for m in range(1, 12)
    ]
    assert all(s.astimezone(PARIS).time() == dt.time(0, 0) for s in p.starts)
    durations = _durations(p.starts, z("2026-11-30T23:00"))
    assert durations[:4] == [31 * 24 * H, 28 * 24 * H, (31 * 24 - 1) * H, 30 * 24 * H]
    assert durations[9] == (31 * 24 + 1) * H  # October: the fall-back hour
    # Month keys: the local day number of the month's first day.
    assert p.keys[0] == (dt.date(2026, 1, 1) - dt.date(1970, 1, 1)).days
    assert p.keys[2] == (dt.date(2026, 3, 1) - dt.date(1970, 1, 1)).days
    # New York's November starts at 04:00Z (EDT), its December at 05:00Z (EST).
    p, _ = buckets.plan("month", NEW_YORK, z("2026-11-01T04:00"), z("2027-01-01T05:00"), 1000)
    assert p.starts == (z("2026-11-01T04:00"), z("2026-12-01T05:00"))
    # Leap years: February 2028 has 29 days.
    p, _ = buckets.plan("month", UTC, z("2028-02-10T00:00"), z("2028-03-10T00:00"), 1000)
    assert _durations(p.starts, z("2028-04-01T00:00")) == [29 * 24 * H, 31 * 24 * H]


def test_plan_month_cap_counts_months() -> None:
    since, until = z("2020-01-01T00:00"), z("2026-06-15T00:00")  # 78 months
    full, _ = buckets.plan("month", PARIS, since, until, 1000)
    assert len(full.starts) == 78
    p, used = buckets.plan("month", PARIS, since, until, 12)
    assert p.starts == full.starts[-12:]
    assert used == p.starts[0] == z("2025-06-30T22:00")  # 2025-07-01 00:00 in Paris


def test_plan_partial_first_and_last_buckets() -> None:
    # since and until fall inside buckets: the plan covers them whole, since is kept as given.
    since, until = z("2026-03-29T00:20:00.5"), z("2026-03-29T03:00:00.000001")
    p, used = buckets.plan("hour", PARIS, since, until, 1000)
    assert used == since
    assert p.starts == (
        z("2026-03-29T00:00"),
        z("2026-03-29T01:00"),
        z("2026-03-29T02:00"),
        z("2026-03-29T03:00"),
    )
    # until on a bucket boundary: that bucket is not part of the window.
    p, _ = buckets.plan("hour", PARIS, since, z("2026-03-29T03:00"), 1000)
    assert p.starts[-1] == z("2026-03-29T02:00")
    # A window of one microsecond.
    p, used = buckets.plan("day", PARIS, z("2026-03-29T12:00"), z("2026-03-29T12:00:00.000001"), 1000)
    assert p.starts == (z("2026-03-28T23:00"),) and used == z("2026-03-29T12:00")


def test_plan_cap_keeps_the_last_buckets_and_moves_since() -> None:
    since, until = z("2026-03-28T20:30"), z("2026-03-29T05:15")  # Paris 21:30 CET .. 07:15 CEST
    full, used = buckets.plan("hour", PARIS, since, until, 1000)
    assert used == since
    assert len(full.starts) == 10  # 20:00Z .. 05:00Z (Paris hours are UTC hours)
    for n in range(1, len(full.starts)):
        p, used = buckets.plan("hour", PARIS, since, until, n)
        assert p.starts == full.starts[-n:]
        assert p.keys == full.keys[-n:]
        assert used == full.starts[-n]
        assert used > since
    # Exactly enough, or more than enough: since unchanged.
    for n in (len(full.starts), len(full.starts) + 1, 10_000):
        p, used = buckets.plan("hour", PARIS, since, until, n)
        assert p.starts == full.starts and used == since


def test_plan_cap_over_dst_days() -> None:
    # Days 2026-10-20 .. 2026-10-27 in Paris; keep 3: 25th (25 h), 26th, 27th.
    p, used = buckets.plan("day", PARIS, z("2026-10-19T22:00"), z("2026-10-27T12:00"), 3)
    assert p.starts == (z("2026-10-24T22:00"), z("2026-10-25T23:00"), z("2026-10-26T23:00"))
    assert used == z("2026-10-24T22:00")
    p, used = buckets.plan("week", NEW_YORK, z("2026-01-01T00:00"), z("2026-03-10T00:00"), 2)
    assert p.starts == (z("2026-03-02T05:00"), z("2026-03-09T04:00"))
    assert used == z("2026-03-02T05:00")


# --------------------------------------------------------------------------------------------
# offset_segments


def _reference_segments(tz: ZoneInfo, since: dt.datetime, until: dt.datetime) -> list[OffsetSegment]:
    """Scan a 15-minute grid (every transition of the zones tested is on a quarter hour)."""

    def off(t: dt.datetime) -> int:
        o = t.astimezone(tz).utcoffset()
        assert o is not None
        return o // US

    segments = [OffsetSegment(buckets.to_us(since), off(since))]
    t = since.replace(minute=since.minute - since.minute % 15, second=0, microsecond=0) + dt.timedelta(
        minutes=15
    )
    while t < until:
        if off(t) != segments[-1].offset_us:
            assert off(t - US) == segments[-1].offset_us  # the change is exactly at t
            segments.append(OffsetSegment(buckets.to_us(t), off(t)))
        t += dt.timedelta(minutes=15)
    return segments


@pytest.mark.parametrize("tz", [UTC_ZONE, PARIS, NEW_YORK, KOLKATA, LORD_HOWE], ids=str)
def test_offset_segments_find_the_exact_transitions_of_a_year(tz: ZoneInfo) -> None:
    since, until = z("2025-12-31T17:23:11.5"), z("2027-01-02T00:00")
    got = list(buckets.offset_segments(tz, since, until))
    assert got == _reference_segments(tz, since, until)
    assert got[0].start_us == buckets.to_us(since)


def test_offset_segments_known_instants() -> None:
    h = 3_600_000_000
    got = buckets.offset_segments(PARIS, z("2026-03-01T00:00"), z("2026-12-01T00:00"))
    assert got == (
        OffsetSegment(buckets.to_us(z("2026-03-01T00:00")), h),
        OffsetSegment(buckets.to_us(z("2026-03-29T01:00")), 2 * h),
        OffsetSegment(buckets.to_us(z("2026-10-25T01:00")), h),
    )
    got = buckets.offset_segments(LORD_HOWE, z("2026-03-01T00:00"), z("2026-12-01T00:00"))
    assert got == (
        OffsetSegment(buckets.to_us(z("2026-03-01T00:00")), 11 * h),
        OffsetSegment(buckets.to_us(z("2026-04-04T15:00")), 21 * h // 2),
        OffsetSegment(buckets.to_us(z("2026-10-03T15:30")), 11 * h),
    )
    assert buckets.offset_segments(KOLKATA, z("2026-01-01T00:00"), z("2026-12-01T00:00")) == (
        OffsetSegment(buckets.to_us(z("2026-01-01T00:00")), 11 * h // 2),
    )


@pytest.mark.parametrize(
    ("since", "until", "changes"),
    [
        # Short windows (under the 6-hour probe step) around the Paris spring forward at 01:00Z.
        ("2026-03-29T00:59:59.999999", "2026-03-29T01:00:00.000001", ["2026-03-29T01:00"]),
        ("2026-03-29T00:30", "2026-03-29T02:00", ["2026-03-29T01:00"]),
        ("2026-03-29T01:00", "2026-03-29T02:00", []),  # starts on the transition: one segment
        ("2026-03-28T20:00", "2026-03-29T01:00", []),  # ends on it: the new offset is never used
        # New York fall back at 06:00Z, window not aligned on anything.
        ("2026-10-31T23:17:03.25", "2026-11-01T06:00:00.5", ["2026-11-01T06:00"]),
    ],
)
def test_offset_segments_short_windows(since: str, until: str, changes: list[str]) -> None:
    tz = NEW_YORK if since.startswith("2026-1") else PARIS
    got = buckets.offset_segments(tz, z(since), z(until))
    assert got[0].start_us == buckets.to_us(z(since))
    assert [buckets.from_us(s.start_us) for s in got[1:] if s.start_us < buckets.to_us(z(until))] == [
        z(c) for c in changes
    ]
    # Whatever the segments, the offset they give for each instant of the window is zoneinfo's.
    t = z(since)
    while t < z(until):
        seg = [s for s in got if s.start_us <= buckets.to_us(t)][-1]
        assert seg.offset_us == t.astimezone(tz).utcoffset() // US  # type: ignore[operator]
        t += dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    "zone",
    ["UTC", "Europe/Paris", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "Australia/Lord_Howe"],
)
def test_hour_plans_by_utc_hours_equal_the_zone_aware_walk(zone: str) -> None:
    """The UTC-hour shortcut of `plan` gives exactly what the general walk gives, caps included."""
    tz = ZoneInfo(zone)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    shortcut = 0
    for i in range(60):
        since = base + dt.timedelta(days=6 * i, minutes=(37 * i) % 120, microseconds=i % 2)
        until = since + dt.timedelta(hours=(i * 13) % 200 + 1, minutes=(11 * i) % 60)
        for cap in (1000, 24):
            fast = buckets._plan_utc_hours(tz, since, until, cap)
            walked = buckets._plan_walk("hour", tz, since, until, cap)
            if fast is not None:
                shortcut += 1
                assert fast == walked, (zone, since, until, cap)
            assert buckets.plan("hour", tz, since, until, cap) == walked
    # Whole-hour offsets take the shortcut (Lord Howe in its +11:00 summer too), Kolkata never.
    assert (shortcut > 0) == (zone != "Asia/Kolkata")
