"""No SQL text is built from data: SQL lives only in storage/, and every interpolation into SQL text
is a fixed table or column of the contract (checked before use) or goes through quote_identifier."""

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
    "table",  # a key of FIXED_TABLES, checked before use (checked_table / WARM_START_TABLES)
    "key_column",  # "run_key" or "as_of_run_key", checked before use
    "body",  # joined quote_identifier(...) column definitions of FIXED_TABLES
    "primary",  # joined quote_identifier(...) key columns of FIXED_TABLES
    "kind",  # a column type of FIXED_TABLES
    "quote_identifier(name)",
    "quote_identifier(column)",
}


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
    found = []
    for path in (PACKAGE / "storage").rglob("*.py"):
        for line in path.read_text().splitlines():
            start = line.find('f"')
            if start >= 0 and SQL.search(line[start:]):
                found += re.findall(r"\{([^{}]+)\}", line[start:])
    assert found and set(found) <= ALLOWED, set(found) - ALLOWED


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
