"""Performance benchmark of usage-service (issue 5): one command loads a realistic data set into a
throwaway PostgreSQL cluster, drives every RPC under concurrency, and prints throughput and latency
beside two baselines measured in the same run (a bare gRPC server replaying the same response, and
the same query as plain SQL through psycopg). See bench/README.md.

    python -m bench --events 1000000 [--data-dir DIR] [--json results.json]
"""
