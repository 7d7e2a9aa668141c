"""`python -m persistence_pipeline run FIRST...LAST`: one range run, quietly, ending with its answer
(run_command.py); `python -m persistence_pipeline report`: what the warehouse knows, without
training anything; `python -m persistence_pipeline export`: every contract table as Parquet or CSV."""

import argparse
import os
import sys
from pathlib import Path

from persistence_pipeline.core.report import render_report
from persistence_pipeline.core.summary import segment_names, unknown_segment
from persistence_pipeline.storage.export import FORMATS, MANIFEST, ExportFailed, export_tables
from persistence_pipeline.storage.latest_run import REPORT_LOCK_WAIT_SECONDS, WarehouseUnreadable, latest_run

# exit statuses: 1 the warehouse cannot be read (or an export cannot be written), 2 a bad argument
# (argparse's own status for its errors)
UNREADABLE, BAD_ARGUMENT = 1, 2


def report(
    warehouse: Path,
    markdown: bool,
    top_n: int,
    segment: str | None = None,
    wait_seconds: float = REPORT_LOCK_WAIT_SECONDS,
) -> int:
    try:
        latest = latest_run(warehouse, wait_seconds)
    except WarehouseUnreadable as problem:
        print(problem, file=sys.stderr)
        return UNREADABLE
    if segment is not None and segment not in segment_names(latest.segments):
        run_key = str(latest.latest["run_key"])
        print(unknown_segment(segment, segment_names(latest.segments), run_key), file=sys.stderr)
        return BAD_ARGUMENT
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
            latest.segments,
            segment,
            latest.stale,
            latest.sizing,
            (latest.ensemble, latest.agreement),
            latest.suspects,
        ),
        end="",
    )
    return 0


def export(warehouse: Path, out: Path, fmt: str, wait_seconds: float) -> int:
    try:
        written = export_tables(warehouse, out, fmt, wait_seconds)
    except (WarehouseUnreadable, ExportFailed) as problem:
        print(problem, file=sys.stderr)
        return UNREADABLE
    for item in written:
        print(f"{item.table}: {item.rows} rows -> {item.path}")
    print(f"{len(written)} tables of {warehouse} exported as {fmt}; columns and types in {out / MANIFEST}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m persistence_pipeline")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser(
        "report", help="print the latest run, its stability summary and the top alpha features"
    )
    write = commands.add_parser("export", help="write every contract table to Parquet or CSV files")
    launch = commands.add_parser(
        "run",
        help="materialize a range in ONE Dagster run, quietly, ending with a summary",
    )
    launch.add_argument(
        "range", metavar="FIRST...LAST", help="the days of the range, e.g. 2021-01-04...2021-06-30"
    )
    launch.add_argument(
        "--select", default="*", help="the assets (Dagster's selection syntax; default '*': all)"
    )
    launch.add_argument(
        "--warehouse",
        type=Path,
        default=Path(os.environ.get("PERSISTENCE_WAREHOUSE") or "data/warehouse.duckdb"),
        help="the DuckDB file the summary reads (default: $PERSISTENCE_WAREHOUSE or data/warehouse.duckdb)",
    )
    for command in (show, write):
        command.add_argument(
            "--warehouse",
            type=Path,
            default=Path(os.environ.get("PERSISTENCE_WAREHOUSE", "data/warehouse.duckdb")),
            help="the DuckDB file (default: $PERSISTENCE_WAREHOUSE or data/warehouse.duckdb)",
        )
        command.add_argument(
            "--wait",
            type=float,
            default=REPORT_LOCK_WAIT_SECONDS,
            metavar="SECONDS",
            help=f"how long to wait for a run writing the warehouse (default {REPORT_LOCK_WAIT_SECONDS:g})",
        )
    write.add_argument(
        "--format", choices=FORMATS, default="parquet", help="the file format (default parquet)"
    )
    write.add_argument(
        "--out", type=Path, required=True, help="the folder to write <table>.<format> files into"
    )
    show.add_argument("--markdown", action="store_true", help="print markdown instead of plain text")
    show.add_argument(
        "--top", type=int, default=10, help="how many alpha features (and segment features) to show"
    )
    show.add_argument(
        "--segment",
        metavar="SEGMENT",
        help="also show the latest run's top features within one strategy or side, by their rank "
        "there (e.g. strategy=mean_reversion, side=short; the report names the run's segments)",
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        from persistence_pipeline.run_command import run  # loads the Dagster definitions

        return run(args.range, args.select, args.warehouse)
    if args.command == "export":
        return export(args.warehouse, args.out, args.format, args.wait)
    return report(args.warehouse, args.markdown, args.top, args.segment, args.wait)


if __name__ == "__main__":
    sys.exit(main())
