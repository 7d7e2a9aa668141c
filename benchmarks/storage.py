"""What a warehouse query costs: `Database.query("SELECT 1")` (schema migrated once per process and
file) against a bare DuckDB connection, the same through a run's staged view (the overlay views of
storage/database.py), and checking and migrating the contract's tables on every connection (what the
warehouse did before storage/ existed). Medians over many calls.

    python -m benchmarks.storage [--calls 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from persistence_pipeline.storage.contract import ensure_schema
from persistence_pipeline.storage.database import Database


def median_ms(call: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bare(path: str) -> None:
    with duckdb.connect(path) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SELECT 1").df()


def migrate_every_time(path: str) -> None:
    with duckdb.connect(path) as con:
        con.execute("SET TimeZone = 'UTC'")
        ensure_schema(con)
        con.execute("SELECT 1").df()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    calls = parser.parse_args().calls
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "warehouse.duckdb")
        db = Database(path)
        db.query("SELECT 1")  # create the file and its tables
        staged = Database(path, staged_by="benchmark-run")
        figures = {
            "bare duckdb connection + SELECT 1": median_ms(lambda: bare(path), calls),
            "Database.query('SELECT 1') (migrated once)": median_ms(lambda: db.query("SELECT 1"), calls),
            "the same in a run's staged view (overlay views)": median_ms(
                lambda: staged.query("SELECT 1"), calls
            ),
            "schema checked on every connection (before)": median_ms(lambda: migrate_every_time(path), calls),
        }
    floor = figures["bare duckdb connection + SELECT 1"]
    print(f"| connection ({calls} calls) | median ms | ratio to bare |\n|---|---:|---:|")
    for name, value in figures.items():
        print(f"| {name} | {value:.2f} | {value / floor:.2f} |")


if __name__ == "__main__":
    main()
