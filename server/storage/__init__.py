"""Storage: one interface (`Storage` in interface.py), one SQLAlchemy Core implementation
(sql_storage.py) that runs on PostgreSQL (psycopg 3) and SQLite, with the dialect differences
confined to the small constructs in dialect.py."""
