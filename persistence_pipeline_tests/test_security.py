"""No SQL text is built from data: every interpolation into SQL is a fixed table or column of the
contract (checked against an allowlist before use) or goes through quote_identifier."""

import re
from pathlib import Path

import duckdb
import pytest

from persistence_pipeline.resources import FIXED_TABLES, Warehouse

PACKAGE = Path(__file__).resolve().parents[1] / "persistence_pipeline"
SQL_START = re.compile(r'f"\s*(SELECT|INSERT|DELETE|CREATE|ALTER|UPDATE|DROP)\b', re.IGNORECASE)
# what may be interpolated into SQL text, and why it is not data
ALLOWED = {
    "table",  # a key of FIXED_TABLES, checked before use
    "name",  # likewise (Warehouse.table) or a FIXED_TABLES column name
    "key_column",  # "run_key" or "as_of_run_key", checked before use
    "body",  # joined quote_identifier(...) column definitions of FIXED_TABLES
    "', '.join(key)",  # primary-key column names of FIXED_TABLES
    "kind",  # a column type of FIXED_TABLES
    "quote_identifier(name)",
    "quote_identifier(column)",
}


def test_sql_interpolations_are_only_allowlisted_names():
    found = []
    for path in PACKAGE.rglob("*.py"):
        for line in path.read_text().splitlines():
            if SQL_START.search(line):
                found += re.findall(r"\{([^{}]+)\}", line[SQL_START.search(line).start() :])
    assert found and set(found) <= ALLOWED, set(found) - ALLOWED


def test_unknown_tables_are_refused(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    with pytest.raises(ValueError, match="unknown table"):
        warehouse.table("trades; DROP TABLE run_metrics")
    with warehouse.transaction() as con, pytest.raises(ValueError, match="unknown table or key"):
        warehouse.replace_run_rows(con, "run_metrics", "run_key = run_key OR 1=1 --", "x", None)
    with pytest.raises(ValueError, match="not a table keyed by as_of_run_key"):
        warehouse.latest_as_of("trades", None, "ridge")


def test_data_values_are_bound_not_interpolated(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    hostile = "x' OR '1'='1"
    assert (
        warehouse.query("SELECT count(*) AS n FROM run_metrics WHERE run_key = ?", [hostile])["n"].iloc[0]
        == 0
    )
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        assert {row[0] for row in con.execute("SHOW TABLES").fetchall()} == set(FIXED_TABLES)
