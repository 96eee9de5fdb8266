"""Months of events: the monthly partitions of the events table (PostgreSQL), and retention.

On PostgreSQL `events` is partitioned by range of `timestamp_us` (schema.py, migration 0010): one
partition per UTC calendar month, named `events_yYYYYmMM`, plus `events_default` for every time no
month partition covers. So an event is never refused or lost for its time: one of a month without a
partition lands in the default partition, and when that month's partition is created its rows move
from the default partition into it in the same transaction (`Dialect.create_month`). SQLite keeps
one table; there is nothing to create and retention deletes rows.

- `ensure(conn, now_us, ahead)`: the partitions of this month and the `ahead` next ones; run by
  `usage-service migrate` and `usage-service partitions` (deploy/ runs it daily), so a month's
  partition exists long before its first event. Creating one is quick: the default partition is
  small when months are created ahead, and only its rows are read.
- `split_default(conn)`: a partition for every month that has rows in the default partition (events
  with times far from now, or a database that went without `partitions` for months).
- `retention(conn, keep_months, now_us, apply)`: removes every event of the months before the last
  `keep_months` (this month included): whole partitions are dropped, rows of those months in the
  default partition deleted; with them go their rollup rows (hours before the first kept month),
  their idempotency claims and the voided versions of those months. It never touches a kept month:
  everything it removes is older than the first instant of the window, and every statement says so.
  Without `apply` it only counts.

Retention changes answers about the removed months, by design, and answers `as_of` a past moment
about them; answers about kept months are unchanged. A claim removed with its event lets a client
that retries that event (older than the window) store it again: keep more months than any client
retries. Every organization's data version goes up, so no cached answer outlives the removal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.storage import schema
from server.storage.dialects import dialect_of

E = schema.events
V = schema.voided_events
K = schema.idempotency_keys
ROLLUPS = (schema.rollup_metric_hourly, schema.rollup_dimension_hourly, schema.rollup_customer_hourly)
DEFAULT_PARTITION = "events_default"
# Months created ahead of this one by `migrate` and by `usage-service partitions` unless told.
AHEAD_MONTHS = 3
# The most months `partitions --ahead-months` and `retention --keep-months` take (a hundred years).
MAX_MONTHS = 1200


@dataclasses.dataclass(frozen=True, order=True)
class Month:
    """A UTC calendar month: the range [start_us, end_us) of event times its partition holds."""

    year: int
    month: int  # 1..12

    @classmethod
    def of(cls, us: int) -> Month:
        t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
        return cls(t.year, t.month)

    def plus(self, months: int) -> Month:
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    @property
    def start_us(self) -> int:
        return _us(dt.datetime(self.year, self.month, 1, tzinfo=dt.UTC))

    @property
    def end_us(self) -> int:
        return self.plus(1).start_us

    @property
    def partition(self) -> str:
        return f"events_y{self.year:04d}m{self.month:02d}"

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def _us(t: dt.datetime) -> int:
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def months_between(first: Month, last: Month) -> list[Month]:
    out = [first]
    while out[-1] < last:
        out.append(out[-1].plus(1))
    return out


def ensure(conn: Connection, now_us: int, ahead: int = AHEAD_MONTHS) -> dict[Month, int]:
    """Create the partitions of this month and the `ahead` next ones that do not exist yet; for each
    month created, the events it took over from the default partition. Nothing on SQLite."""
    this = Month.of(now_us)
    return create_months(conn, months_between(this, this.plus(ahead)))


def split_default(conn: Connection) -> dict[Month, int]:
    """Give every month with events in the default partition its own partition (rows moved)."""
    dialect = dialect_of(conn.engine)
    return create_months(conn, dialect.default_partition_months(conn))


def create_months(conn: Connection, months: list[Month]) -> dict[Month, int]:
    """Create the partitions of `months` that do not exist yet (rows of theirs in the default
    partition move into them); for each one created, how many rows moved."""
    dialect = dialect_of(conn.engine)
    if not dialect.partitions_events:
        return {}
    existing = set(dialect.month_partitions(conn))
    return {m: dialect.create_month(conn, m) for m in months if m not in existing}


@dataclasses.dataclass(frozen=True)
class RetentionReport:
    """What retention removed (or, in a dry run, would remove)."""

    first_kept: Month
    partitions: tuple[str, ...]  # month partitions dropped whole
    events: int  # events of the removed months (in those partitions and the default one)
    voided_versions: int
    idempotency_claims: int
    rollup_rows: int
    applied: bool

    def lines(self) -> list[str]:
        verb = "removed" if self.applied else "would remove (dry run: nothing changed; --apply removes)"
        return [
            f"keeping events from {self.first_kept} on (every time at or after "
            f"{dt.datetime.fromtimestamp(self.first_kept.start_us / 1e6, dt.UTC):%Y-%m-%dT%H:%M:%SZ})",
            f"{verb}:",
            f"  month partitions: {', '.join(self.partitions) or 'none'}",
            f"  events: {self.events}",
            f"  voided versions: {self.voided_versions}",
            f"  idempotency claims: {self.idempotency_claims}",
            f"  rollup rows: {self.rollup_rows}",
        ]


def retention(conn: Connection, keep_months: int, now_us: int, apply: bool) -> RetentionReport:
    """Remove (or with apply=False count) everything of the months before the last `keep_months`."""
    if keep_months < 1:
        raise ValueError("keep_months must be at least 1 (the current month)")
    dialect = dialect_of(conn.engine)
    first_kept = Month.of(now_us).plus(1 - keep_months)
    cutoff = first_kept.start_us
    old_months = [m for m in dialect.month_partitions(conn) if m.end_us <= cutoff]
    old_events = E.c.timestamp_us < cutoff
    # Claims of the removed events only: a claim of a voided version stays, since the key's current
    # version may be a later amend inside the window, and a kept claim only ever answers DUPLICATE.
    claims = (
        sa.select(E.c.id)
        .where(E.c.organization_id == K.c.organization_id, E.c.id == K.c.event_id, old_events)
        .exists()
    )
    counts = [
        (E, old_events),
        (V, V.c.timestamp_us < cutoff),
        (K, claims),
        *((table, table.c.hour_us < cutoff) for table in ROLLUPS),
    ]
    n_events, n_voided, n_claims, *n_rollups = (
        conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one()
        for table, where in counts
    )
    if apply:
        conn.execute(sa.delete(K).where(claims))  # before their events go
        if old_months:
            dialect.drop_months(conn, old_months)
        conn.execute(sa.delete(E).where(old_events))  # the default partition's, and SQLite's
        conn.execute(sa.delete(V).where(V.c.timestamp_us < cutoff))
        for table in ROLLUPS:
            conn.execute(sa.delete(table).where(table.c.hour_us < cutoff))
        # Cached answers (logic/answer_cache.py) are keyed by these versions.
        versions = schema.organization_versions
        conn.execute(sa.update(versions).values(data_version=versions.c.data_version + 1))
    return RetentionReport(
        first_kept,
        tuple(m.partition for m in old_months),
        n_events,
        n_voided,
        n_claims,
        sum(n_rollups),
        applied=apply,
    )
