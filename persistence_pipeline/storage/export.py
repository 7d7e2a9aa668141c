"""`python -m persistence_pipeline export`: every public table of the data contract as a file (Parquet
or CSV) that loads elsewhere, from one consistent snapshot of the warehouse, with a manifest of the
tables' columns, types, keys and row counts (`contract.json`), and `read_export` to load them back.

Rows are written in the order of each table's key, so the same warehouse gives the same files. The
files are written into a hidden folder in the output folder and moved into place only when every one
is written, the manifest last: a failed export moves none, and the manifest names an export's files
once they are all in place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from persistence_pipeline.storage.contract import FIXED_TABLES, quote_identifier
from persistence_pipeline.storage.latest_run import reading

FORMATS = ("parquet", "csv")
MANIFEST = "contract.json"


@dataclass(frozen=True)
class ExportedTable:
    table: str
    path: Path
    rows: int


class ExportFailed(Exception):
    """A file of the export could not be written (the message names it); nothing was moved into place."""


def export_tables(warehouse: Path, out: Path, fmt: str, wait_seconds: float) -> list[ExportedTable]:
    """Write every contract table of `warehouse` to `out/<table>.<fmt>`, and the manifest. Raises
    WarehouseUnreadable (storage/latest_run.py) when the warehouse cannot be read, ExportFailed when a
    file cannot be written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    written: list[ExportedTable] = []
    manifest: dict[str, dict] = {}
    with reading(warehouse, wait_seconds, "export") as con:
        try:
            out.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(dir=out, prefix=".export-"))
        except OSError as error:
            raise ExportFailed(f"cannot write into {out}: {error.strerror or error}") from error
        try:
            present = {
                row[0]
                for row in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
                ).fetchall()
            }
            for table, (_, key) in FIXED_TABLES.items():
                if table not in present:  # a warehouse written before the table existed
                    continue
                relation = con.table(table).order(", ".join(quote_identifier(column) for column in key))
                staged = folder / f"{table}.{fmt}"
                try:
                    if fmt == "parquet":
                        relation.write_parquet(str(staged))
                    else:
                        relation.write_csv(str(staged), header=True)
                except duckdb.Error as error:
                    raise ExportFailed(f"cannot write {out / staged.name}: {error}") from error
                rows = int(relation.shape[0])
                manifest[table] = {
                    "file": staged.name,
                    "key": list(key),
                    "rows": rows,
                    "columns": dict(zip(relation.columns, map(str, relation.types), strict=True)),
                }
                written.append(ExportedTable(table, out / staged.name, rows))
            try:
                (folder / MANIFEST).write_text(
                    json.dumps({"format": fmt, "tables": manifest}, indent=2) + "\n"
                )
                for item in written:
                    os.replace(folder / item.path.name, item.path)
                os.replace(folder / MANIFEST, out / MANIFEST)
            except OSError as error:
                raise ExportFailed(f"cannot write into {out}: {error}") from error
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return written


def read_export(folder: Path) -> dict[str, pd.DataFrame]:
    """The tables of an export, as the warehouse holds them: Parquet keeps its types; CSV is read
    with the manifest's types (UTC timestamps, NULLs as empty fields)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        tables = {}
        for table, spec in manifest["tables"].items():
            path = str(folder / spec["file"])
            if manifest["format"] == "parquet":
                relation = con.read_parquet(path)
            else:
                # an empty text is written quoted (""), a NULL as nothing: read them apart
                relation = con.read_csv(path, header=True, dtype=spec["columns"], allow_quoted_nulls=False)
            tables[table] = relation.df()
        return tables
    finally:
        con.close()
