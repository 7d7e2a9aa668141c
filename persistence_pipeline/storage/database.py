"""The warehouse connection: one DuckDB file, short-lived connections that wait for another
process's lock, transactions, the schema migrated once per process and file (not per query), and
the staging overlay that makes a run whole or absent.

A `Database` with `staged_by` set (a Dagster run id) is that run's view of the warehouse: its
writes go to the `staging` schema, and its reads see the public tables with its own staged rows in
place of the rows they replace (temporary views that shadow the public tables' names on the
connection). Everyone else (users' queries, the report, other runs) reads only the public tables,
which change only when a run publishes all its rows in one transaction (storage/publish.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from persistence_pipeline.storage.contract import (
    RUN_KEY_COLUMNS,
    RUN_TABLES,
    catalog_name,
    checked_table,
    ensure_schema,
    has_contract,
)

_migrated: set[tuple[int, int]] = set()
_migration_lock = threading.Lock()
# per (staged run, table): how many times the run wrote the table; what a run read stays valid
# while the tables it read are unchanged (storage/run_reads.py)
_writes: Counter[tuple[str, str]] = Counter()


def note_write(run: str | None, table: str) -> None:
    """Record that a staged run wrote `table` (its earlier reads of it are out of date)."""
    if run is not None:
        _writes[(run, table)] += 1


def write_counts(run: str, tables: Sequence[str]) -> tuple[int, ...]:
    """How many times the staged run wrote each of `tables`."""
    return tuple(_writes[(run, table)] for table in tables)


FAILPOINT_VARIABLE = "PERSISTENCE_FAILPOINT"


class InjectedFailure(RuntimeError):
    """Raised at a failpoint named in PERSISTENCE_FAILPOINT (fault-injection tests)."""


def failpoint(name: str) -> None:
    """Fault injection for tests of "a run is whole or absent": when PERSISTENCE_FAILPOINT is `name`
    the process fails here (InjectedFailure), and when it is `name:kill` it is killed (SIGKILL), as a
    crash or an operator would. Unset, as in production, it does nothing."""
    wanted = os.environ.get(FAILPOINT_VARIABLE, "")
    if wanted == name:
        raise InjectedFailure(f"injected failure at {name}")
    if wanted == f"{name}:kill":
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Database:
    """A DuckDB warehouse file. DuckDB allows one writing process per file, so a connection waits
    (retrying while the file is locked, up to `lock_wait_seconds`) for the other process.
    `staged_by`: the Dagster run whose staged rows this view of the warehouse reads and writes."""

    path: str
    lock_wait_seconds: float = 300.0
    staged_by: str | None = None
    # the connection of an open `session`, which every read and write inside it uses
    _open_session: list[duckdb.DuckDBPyConnection] = field(
        default_factory=list, compare=False, repr=False, hash=False
    )

    @contextmanager
    def session(self) -> Iterator[Database]:
        """One connection (and one overlay) for every read and write inside: a stage reads its
        inputs in one session rather than connecting for each query. The file stays locked against
        other processes while the session is open, so a session covers reads, not long computations."""
        if self._open_session:
            yield self
            return
        with self.connect() as con:
            self._open_session.append(con)
            try:
                yield self
            finally:
                self._open_session.clear()

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection in UTC; a writable one has the contract's schema in place, and a staged one
        reads through the run's overlay (the session's connection inside `session`)."""
        if self._open_session:
            yield self._open_session[0]
            return
        if not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = self._open(read_only)
        try:
            con.execute("SET TimeZone = 'UTC'")
            if not read_only:
                self._migrate_once(con)
            con.execute("SET VARIABLE staged_by = ?", [self.staged_by])
            if self.staged_by is not None:
                create_overlay(con)
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
        file replaced on disk is a new file: the key is its device and inode). A new file can take a
        deleted file's inode, so a file without the contract's tables is migrated whatever its key."""
        status = os.stat(self.path)
        key = (status.st_dev, status.st_ino)
        with _migration_lock:
            if key not in _migrated or not has_contract(con):
                ensure_schema(con)
                _migrated.add(key)


def public(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """The catalog-qualified name of a public table (unqualified names may be a run's overlay)."""
    return f"{catalog_name(con)}.main.{checked_table(table)}"


def staged_by(con: duckdb.DuckDBPyConnection) -> str | None:
    """The Dagster run whose rows this connection stages (None: it writes the public tables)."""
    value = con.execute("SELECT getvariable('staged_by')").fetchall()[0][0]
    return None if value is None else str(value)


def create_overlay(con: duckdb.DuckDBPyConnection) -> None:
    """Temporary views named like the public tables: the public rows, without those the run's staged
    rows replace, plus the run's staged rows."""
    prefix = catalog_name(con)
    mine = "staged_by = getvariable('staged_by')"
    for table, key in RUN_TABLES.items():
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM {prefix}.main.{table} WHERE {key} NOT IN"
            f" (SELECT key_value FROM {prefix}.staging.replaced WHERE {mine} AND table_name = '{table}')"
            f" UNION ALL BY NAME SELECT * EXCLUDE (staged_by) FROM {prefix}.staging.{table} WHERE {mine}"
        )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW trades AS SELECT * FROM {prefix}.main.trades t WHERE NOT EXISTS"
        f" (SELECT 1 FROM {prefix}.staging.trade_ranges r WHERE r.{mine}"
        "   AND t.entry_time >= r.range_start AND t.entry_time < r.range_end)"
        f" UNION ALL BY NAME SELECT * EXCLUDE (staged_by) FROM {prefix}.staging.trades WHERE {mine}"
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW trade_loads AS"
        f" SELECT * FROM {prefix}.main.trade_loads l WHERE NOT EXISTS"
        f" (SELECT 1 FROM {prefix}.staging.trade_loads s WHERE s.{mine}"
        "   AND s.range_start = l.range_start AND s.range_end = l.range_end)"
        f" UNION ALL BY NAME SELECT * EXCLUDE (staged_by) FROM {prefix}.staging.trade_loads WHERE {mine}"
    )


def replace_run_rows(
    con: duckdb.DuckDBPyConnection, table: str, key_column: str, key: str, rows: pd.DataFrame
) -> None:
    """Inside a transaction: replace `table`'s rows of one run key with `rows` (by column name): in
    the public table, or, on a staged connection, in the run's staging."""
    if key_column not in RUN_KEY_COLUMNS or RUN_TABLES.get(checked_table(table)) != key_column:
        raise ValueError(f"unknown table or key {table!r}.{key_column!r}")
    run = staged_by(con)
    note_write(run, table)
    incoming = rows.assign(**{key_column: key})
    con.register("incoming_rows", incoming if run is None else incoming.assign(staged_by=run))
    try:
        if run is None:
            con.execute(f"DELETE FROM {public(con, table)} WHERE {key_column} = ?", [key])
            con.execute(f"INSERT INTO {public(con, table)} BY NAME SELECT * FROM incoming_rows")
            return
        con.execute(f"DELETE FROM staging.{table} WHERE staged_by = ? AND {key_column} = ?", [run, key])
        con.execute(
            "DELETE FROM staging.replaced WHERE staged_by = ? AND table_name = ? AND key_value = ?",
            [run, table, key],
        )
        con.execute("INSERT INTO staging.replaced VALUES (?, ?, ?)", [run, table, key])
        con.execute(f"INSERT INTO staging.{table} BY NAME SELECT * FROM incoming_rows")
    finally:
        con.unregister("incoming_rows")


def rows_of_runs(db: Database, run_keys: list[str], sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
    """Rows of `sql`, which joins its table with the view `wanted_runs` (one column, run_key)."""
    with db.connect() as con:
        wanted = pd.DataFrame({"run_key": pd.Series(run_keys, dtype="object")})
        return registered_join(con, "wanted_runs", wanted, sql, params)


def registered_join(
    con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame, sql: str, params: Sequence[Any] = ()
) -> pd.DataFrame:
    """Run `sql` with `frame` registered as the view `name` (how a list of keys reaches a query)."""
    con.register(name, frame)
    try:
        return con.execute(sql, list(params)).df()
    finally:
        con.unregister(name)
