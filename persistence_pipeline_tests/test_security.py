"""No SQL text is built from data: SQL lives only in storage/, and every interpolation into SQL text
is a fixed table or column of the contract (checked before use) or goes through quote_identifier."""

import ast
import datetime as dt
import re
from pathlib import Path

import duckdb
import pytest

from persistence_pipeline.storage.contract import FIXED_TABLES, checked_table
from persistence_pipeline.storage.cross_run import latest_warm_start
from persistence_pipeline.storage.database import Database, replace_run_rows

pytestmark = pytest.mark.storage

PACKAGE = Path(__file__).resolve().parents[1] / "persistence_pipeline"
SQL = re.compile(r"\b(SELECT|INSERT INTO|DELETE FROM|CREATE TABLE|ALTER TABLE|UPDATE \w+ SET|DROP TABLE)\b")
# what may be interpolated into SQL text, and why it is not data
ALLOWED = {
    "table",  # a key of FIXED_TABLES / RUN_TABLES / STAGING_REGISTRY, checked before use
    "schema",  # "main" or "staging"
    "key",  # a run-key column name of the contract (RUN_TABLES)
    "key_column",  # "run_key" or "as_of_run_key", checked before use
    "RUN_TABLES[table]",  # likewise, the key column of a contract table
    "body",  # joined quote_identifier(...) column definitions of FIXED_TABLES
    "constraint",  # the PRIMARY KEY clause of quote_identifier(...) key columns of FIXED_TABLES
    "kind",  # a column type of FIXED_TABLES
    "catalog_name(con)",  # the warehouse file's catalog, through quote_identifier
    "prefix",  # likewise
    "mine",  # a fixed predicate: staged_by = getvariable('staged_by')
    "public(con, table)",  # a contract table, checked, qualified with the quoted catalog
    "public(con, 'run_metrics')",
    "public_trades",  # public(con, "trades")
    "loads",  # public(con, "trade_loads")
    "checkpoints",  # public(con, "checkpoints")
    "inputs",  # public(con, "run_inputs")
    "metrics",  # public(con, "run_metrics")
    "quote_identifier(name)",
    "quote_identifier(column)",
    "selected",  # fixed trades columns and quote_identifier(feature) names
}
SQL_CALLS = {"execute", "query", "sql"}


def sql_interpolations(path: Path) -> list[str]:
    """The expressions formatted into the SQL text of every execute/query call of a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS
        ):
            for argument in node.args[:1]:
                for part in ast.walk(argument):
                    if isinstance(part, ast.FormattedValue):
                        found.append(ast.unparse(part.value))
    return found


def test_sql_lives_only_in_storage():
    outside = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if "storage" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SQL.search(line)
    ]
    assert outside == []


def test_sql_interpolations_are_only_allowlisted_names():
    found = [name for path in (PACKAGE / "storage").rglob("*.py") for name in sql_interpolations(path)]
    assert found and set(found) <= ALLOWED, set(found) - ALLOWED


def test_the_scan_sees_interpolations_on_continuation_lines(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('con.execute(f"ALTER TABLE t"\n    f" ADD COLUMN {data_value} DOUBLE")\n')
    assert sql_interpolations(module) == ["data_value"]


def test_unknown_tables_and_keys_are_refused(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    with pytest.raises(ValueError, match="unknown table"):
        checked_table("trades; DROP TABLE run_metrics")
    with db.transaction() as con, pytest.raises(ValueError, match="unknown table or key"):
        replace_run_rows(con, "run_metrics", "run_key = run_key OR 1=1 --", "x", None)
    with db.transaction() as con, pytest.raises(ValueError, match="unknown table"):
        replace_run_rows(con, "run_metrics; DROP TABLE trades", "run_key", "x", None)
    with pytest.raises(ValueError, match="not a table keyed by as_of_run_key"):
        latest_warm_start(db, "trades", dt.date(2021, 1, 1), "ridge")


def test_data_values_are_bound_not_interpolated(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    hostile = "x' OR '1'='1"
    assert db.query("SELECT count(*) AS n FROM run_metrics WHERE run_key = ?", [hostile])["n"].iloc[0] == 0
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        assert {row[0] for row in con.execute("SHOW TABLES").fetchall()} == set(FIXED_TABLES)
