"""Schema migrations through Alembic: apply them (`usage-service migrate`), or check that a database
is current before serving (`serve` refuses one that is behind).

Several `migrate` may start at once (each replica's init container in deploy/k8s.yaml): on PostgreSQL
each takes one advisory lock for its transaction, so they run one after the other and the later ones
find nothing left to do, instead of racing to create the same tables.
"""

from __future__ import annotations

import pathlib

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from server.storage.dialects import dialect_of

MIGRATIONS = pathlib.Path(__file__).resolve().parent.parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Apply the pending migrations up to `revision` (default: all); returns the revision now current."""
    cfg = _config()
    with engine.begin() as conn:
        dialect_of(engine).lock_for_migration(conn)  # released at commit or rollback
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return head_revision() if revision == "head" else revision


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
