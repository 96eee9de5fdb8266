"""`SqlStorage`: the storage of one database (PostgreSQL via psycopg 3, or SQLite), by concern.

- `catalog` (catalog_store.py): customers, aggregators and aggregator filters;
- `events` (event_store.py): ingestion, exactly once per idempotency key;
- `reads` (event_reads.py): pages of events;
- `aggregates` (aggregates.py): bucketed, ranked, exact aggregates (rollups.py where they answer);
- `corrections` (corrections.py): voids, and the history of an event's versions.
- `meters` (meters.py): aggregators' values per customer.
- `clocks` (clock.py): the organizations' commit clocks, for `as_of` reads.

Each is dialect-neutral SQLAlchemy Core over one `Database` (engine.py), whose dialect object holds
every difference between the two databases (storage/dialects).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from server.deadline import Deadline
from server.storage.aggregates import Aggregates
from server.storage.catalog_store import CatalogStore
from server.storage.clock import Clocks
from server.storage.corrections import CorrectionStore
from server.storage.engine import Database
from server.storage.event_reads import EventReads
from server.storage.event_store import EventStore
from server.storage.meters import MeterReads


class SqlStorage:
    """Storage over one SQLAlchemy engine; implements interface.Storage."""

    def __init__(self, engine: Engine, read_rollups: bool = True) -> None:
        self.db = Database(engine)
        self.catalog = CatalogStore(self.db)
        self.events = EventStore(self.db)
        self.reads = EventReads(self.db)
        self.aggregates = Aggregates(self.db, read_rollups)
        self.corrections = CorrectionStore(self.db)
        self.meters = MeterReads(self.db, read_rollups)
        self.clocks = Clocks(self.db)

    @property
    def engine(self) -> Engine:
        return self.db.engine

    def ping(self) -> None:
        with self.db.read(Deadline(2.0)) as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.db.engine.dispose()
