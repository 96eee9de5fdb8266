"""The rules of the service: queries, ingestion and the catalog, over the Storage interface.

Nothing here knows about protobuf or SQL: requests arrive as validated domain values, answers leave
as domain values, failures as server.errors exceptions.
"""
