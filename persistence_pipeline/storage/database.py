"""The warehouse connection: one DuckDB file, short-lived connections that wait for another
process's lock, transactions, and the schema migrated once per process and file (not per query)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from persistence_pipeline.storage.contract import RUN_KEY_COLUMNS, checked_table, ensure_schema

_migrated: set[tuple[int, int]] = set()
_migration_lock = threading.Lock()


class MissingRowsError(LookupError):
    """An upstream table has no rows for the run a stage needs: materialize the upstream stage first."""


@dataclass(frozen=True)
class Database:
    """A DuckDB warehouse file. DuckDB allows one writing process per file, so a connection waits
    (retrying while the file is locked, up to `lock_wait_seconds`) for the other process."""

    path: str
    lock_wait_seconds: float = 300.0

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection in UTC; a writable one has the contract's schema in place."""
        if not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = self._open(read_only)
        try:
            con.execute("SET TimeZone = 'UTC'")
            if not read_only:
                self._migrate_once(con)
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All writes inside commit together or not at all."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = (), read_only: bool = False) -> pd.DataFrame:
        """Rows of one parameterised statement (values are bound, never formatted into `sql`)."""
        with self.connect(read_only) as con:
            return con.execute(sql, list(params)).df()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_wait_seconds
        while True:
            try:
                return duckdb.connect(self.path, read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _migrate_once(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create or extend the contract's tables the first time this process writes this file (a
        file replaced on disk is a new file: the key is its device and inode)."""
        status = os.stat(self.path)
        key = (status.st_dev, status.st_ino)
        with _migration_lock:
            if key not in _migrated:
                ensure_schema(con)
                _migrated.add(key)


def replace_run_rows(
    con: duckdb.DuckDBPyConnection, table: str, key_column: str, key: str, rows: pd.DataFrame
) -> None:
    """Inside a transaction: delete `table`'s rows of one run key, insert `rows` by column name."""
    if key_column not in RUN_KEY_COLUMNS:
        raise ValueError(f"unknown table or key {table!r}.{key_column!r}")
    checked_table(table)
    con.execute(f"DELETE FROM {table} WHERE {key_column} = ?", [key])
    con.register("incoming_rows", rows.assign(**{key_column: key}))
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_rows")
    con.unregister("incoming_rows")


def registered_join(
    con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame, sql: str, params: Sequence[Any] = ()
) -> pd.DataFrame:
    """Run `sql` with `frame` registered as the view `name` (how a list of keys reaches a query)."""
    con.register(name, frame)
    try:
        return con.execute(sql, list(params)).df()
    finally:
        con.unregister(name)
