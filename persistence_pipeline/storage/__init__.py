"""Everything that touches storage: the only package with SQL text or file paths.

- `contract`: the public tables (columns, keys), schema migration and identifier quoting
- `database`: the DuckDB connection, transactions and the replace-rows-by-run-key write
- `trades`, `runs`, `history`, `cross_run`: typed reads and writes per concern
- `files`: atomic file writes, skops checkpoints and dashboard PNGs

No Dagster here: `resources.py` wraps these for the assets. Moving storage (Parquet + Postgres,
README "Scaling past one machine") touches only this package.
"""
