"""`python -m persistence_pipeline export`: every contract table as Parquet or CSV files that load back
as the warehouse holds them, in one consistent snapshot, the same bytes for the same warehouse."""

import json

import duckdb
import pandas as pd
import pytest

from persistence_pipeline.__main__ import main
from persistence_pipeline.storage.contract import FIXED_TABLES, quote_identifier
from persistence_pipeline.storage.database import Database
from persistence_pipeline.storage.export import MANIFEST, read_export
from persistence_pipeline_tests.conftest import EmbeddedRuns, copy_of


def warehouse_tables(path) -> dict[str, pd.DataFrame]:
    """Every contract table as DuckDB hands it out, rows in the order of the table's key."""
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return {
            table: con.execute(
                f"SELECT * FROM {table} ORDER BY {', '.join(quote_identifier(c) for c in key)}"
            ).df()
            for table, (_, key) in FIXED_TABLES.items()
        }


@pytest.mark.e2e
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_export_loads_back_as_the_warehouse_holds_it(embedded_runs: EmbeddedRuns, tmp_path, capsys, fmt):
    """The two embedded runs, one with an empty text where the other has NULL (CSV keeps them apart)."""
    warehouse = copy_of(embedded_runs.two, tmp_path / "project").warehouse_path
    Database(str(warehouse)).query(
        "UPDATE run_metrics SET curriculum_from_run_key = '' WHERE run_key = ?",
        ["2021-01-04..2021-03-31/ridge"],
    )
    out = tmp_path / "export"
    assert main(["export", "--warehouse", str(warehouse), "--out", str(out), "--format", fmt]) == 0
    expected = warehouse_tables(warehouse)
    loaded = read_export(out)
    assert sorted(loaded) == sorted(FIXED_TABLES) and len(loaded) == 24
    for table, frame in expected.items():
        pd.testing.assert_frame_equal(loaded[table], frame, obj=table)
    curriculum = loaded["run_metrics"]["curriculum_from_run_key"].tolist()
    assert curriculum[0] == "" and pd.isna(curriculum[1])  # an empty text stays one, NULL stays missing
    manifest = json.loads((out / MANIFEST).read_text())
    assert {table: spec["rows"] for table, spec in manifest["tables"].items()} == {
        table: len(frame) for table, frame in expected.items()
    }
    assert manifest["tables"]["trades"]["columns"]["entry_time"] == "TIMESTAMP WITH TIME ZONE"
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [MANIFEST, *(f"{t}.{fmt}" for t in FIXED_TABLES)]
    )
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"trades: {len(expected['trades'])} rows -> {out / ('trades.' + fmt)}"
    assert printed[-1] == f"24 tables of {warehouse} exported as {fmt}; columns and types in {out / MANIFEST}"


@pytest.mark.e2e
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_same_warehouse_exports_the_same_bytes(embedded_runs: EmbeddedRuns, tmp_path, fmt):
    warehouse = str(embedded_runs.one.warehouse_path)
    for name in ("first", "second"):
        assert main(["export", "--warehouse", warehouse, "--out", str(tmp_path / name), "--format", fmt]) == 0
    first, second = sorted((tmp_path / "first").iterdir()), sorted((tmp_path / "second").iterdir())
    assert [p.name for p in first] == [p.name for p in second]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second, strict=True))


@pytest.mark.storage
def test_an_unreadable_warehouse_is_named_and_nothing_is_written(tmp_path, capsys):
    assert main(["export", "--warehouse", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"no warehouse at {tmp_path / 'none.duckdb'}: materialize a range first (see README)"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_an_export_that_cannot_be_written_says_where_and_exits_1(
    embedded_runs: EmbeddedRuns, tmp_path, capsys
):
    taken = tmp_path / "a_file"
    taken.write_text("not a folder")
    assert main(["export", "--warehouse", str(embedded_runs.one.warehouse_path), "--out", str(taken)]) == 1
    assert capsys.readouterr().err.startswith(f"cannot write into {taken}: ")
    assert taken.read_text() == "not a folder"
