"""usage-service: stores usage events and answers list and aggregate queries over gRPC.

Layout: `config` (settings), `auth` (JWT), `errors` (the one error table), `logic/` (query, ingest and
catalog rules), `storage/` (SQLAlchemy Core over PostgreSQL or SQLite), `rpc/` (servicers that only
translate proto <-> domain, plus interceptors), `app` (composition root), `cli` (entry point).
"""
