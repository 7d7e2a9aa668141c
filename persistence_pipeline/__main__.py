"""`python -m persistence_pipeline report`: what the warehouse knows, without training anything."""

import argparse
import os
import sys
from pathlib import Path

import duckdb

from persistence_pipeline.core.report import render_report


def report(warehouse: Path, markdown: bool, top_n: int) -> int:
    if not warehouse.exists():
        print(f"no warehouse at {warehouse}: materialize a range first (see README)", file=sys.stderr)
        return 1
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        tables = {
            row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        if "run_metrics" not in tables or con.execute("SELECT count(*) FROM run_metrics").fetchone()[0] == 0:
            print(
                f"the warehouse {warehouse} holds no run yet: materialize a range first (see README)",
                file=sys.stderr,
            )
            return 1
        runs = con.execute("SELECT * FROM run_metrics ORDER BY range_end, range_start, run_key").df()
        latest = runs.iloc[-1]
        same_kind = int((runs["model_kind"] == latest["model_kind"]).sum())
        summary = (
            con.execute("SELECT * FROM stability_summary WHERE as_of_run_key = ?", [latest["run_key"]]).df()
            if "stability_summary" in tables
            else None
        )
        alpha = (
            con.execute(
                "SELECT * FROM feature_alpha WHERE as_of_run_key = ? ORDER BY alpha_score DESC NULLS LAST, feature",
                [latest["run_key"]],
            ).df()
            if "feature_alpha" in tables
            else None
        )
    print(
        render_report(
            latest,
            summary.iloc[0] if summary is not None and len(summary) else None,
            alpha if alpha is not None else runs.iloc[0:0].assign(alpha_score=[], feature=[]),
            same_kind,
            markdown,
            top_n,
        ),
        end="",
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m persistence_pipeline")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser(
        "report", help="print the latest run, its stability summary and the top alpha features"
    )
    show.add_argument(
        "--warehouse",
        type=Path,
        default=Path(os.environ.get("PERSISTENCE_WAREHOUSE", "data/warehouse.duckdb")),
        help="the DuckDB file (default: $PERSISTENCE_WAREHOUSE or data/warehouse.duckdb)",
    )
    show.add_argument("--markdown", action="store_true", help="print markdown instead of plain text")
    show.add_argument("--top", type=int, default=10, help="how many alpha features to show")
    args = parser.parse_args(argv)
    return report(args.warehouse, args.markdown, args.top)


if __name__ == "__main__":
    sys.exit(main())
