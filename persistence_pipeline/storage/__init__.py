"""Everything that touches storage: the only package with SQL text or file paths.

- `contract`: the public tables (columns, keys), schema migration and identifier quoting
- `database`: the DuckDB connection, transactions, the replace-rows-by-run-key write, and the
  staging overlay through which a Dagster run reads and writes its own rows
- `publish`: a run's staged rows made public in one transaction when its last stage is done
- `trades`, `runs`, `history`, `cross_run`, `report`: typed reads and writes per concern
- `files`: atomic file writes, skops checkpoints and dashboard PNGs (staged, then moved in)

No Dagster here: `resources.py` wraps these for the assets. Moving storage (Parquet + Postgres,
docs/how-to/postgres.md) touches only this package.
"""
