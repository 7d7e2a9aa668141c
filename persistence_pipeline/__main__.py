"""`python -m persistence_pipeline report`: what the warehouse knows, without training anything."""

import argparse
import os
import sys
from pathlib import Path

from persistence_pipeline.core.report import render_report
from persistence_pipeline.storage.report import WarehouseUnreadable, latest_run


def report(warehouse: Path, markdown: bool, top_n: int) -> int:
    try:
        latest = latest_run(warehouse)
    except WarehouseUnreadable as problem:
        print(problem, file=sys.stderr)
        return 1
    print(
        render_report(
            latest.latest,
            latest.summary,
            latest.alpha,
            latest.n_runs_same_kind,
            markdown,
            top_n,
            latest.quarantined,
            latest.interactions,
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
