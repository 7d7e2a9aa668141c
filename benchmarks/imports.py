"""What importing costs the commands: the CPU (user + system) of `python -m persistence_pipeline
report` against a bare DuckDB query of the same warehouse (what the report cannot avoid: Python,
DuckDB, pandas and its main query), and of importing the Dagster code location against importing
Dagster alone. Each figure is the median over fresh subprocesses, so every import is paid in full.
The report reads an existing warehouse (`python -m persistence_pipeline run ...` makes one).

    python -m benchmarks.imports [--warehouse data/warehouse.duckdb] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

# the report's main query (storage/runs.py: every stored run, oldest first)
BARE_QUERY = (
    "import duckdb, sys; duckdb.connect(sys.argv[1], read_only=True)"
    ".execute('SELECT * FROM run_metrics ORDER BY range_end, range_start, run_key').df()"
)
# the most each command may cost, as a multiple of what it is compared with
GOALS = {"report": 3.0, "import persistence_pipeline.definitions": 1.5}


def cpu_seconds(command: list[str]) -> float:
    """User + system CPU of one subprocess run of `command` (its output discarded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_cpu(command: list[str], floor: list[str], repeats: int) -> tuple[float, float]:
    """Median CPU of `command` and of `floor`, run in turns, so that a change in the machine's load
    weighs on both alike."""
    costs, floors = [], []
    for _ in range(repeats):
        costs.append(cpu_seconds(command))
        floors.append(cpu_seconds(floor))
    return statistics.median(costs), statistics.median(floors)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--warehouse",
        type=Path,
        default=Path(os.environ.get("PERSISTENCE_WAREHOUSE") or "data/warehouse.duckdb"),
        help="the warehouse the report reads (default: $PERSISTENCE_WAREHOUSE or data/warehouse.duckdb)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not args.warehouse.is_file():
        sys.exit(f"no warehouse at {args.warehouse}: run `python -m persistence_pipeline run ...` first")
    python, warehouse = sys.executable, str(args.warehouse)
    pairs = [
        (
            "report",
            [python, "-m", "persistence_pipeline", "report", "--warehouse", warehouse],
            "bare query",
            [python, "-c", BARE_QUERY, warehouse],
        ),
        (
            "import persistence_pipeline.definitions",
            [python, "-c", "import persistence_pipeline.definitions"],
            "import dagster",
            [python, "-c", "import dagster"],
        ),
    ]
    print(
        f"| command (CPU s, median of {args.repeats}) | CPU s | against | CPU s | ratio | goal | met |\n"
        "|---|---:|---|---:|---:|---:|---|"
    )
    for name, command, floor_name, floor_command in pairs:
        cost, floor = median_cpu(command, floor_command, args.repeats)
        ratio, goal = cost / floor, GOALS[name]
        print(
            f"| {name} | {cost:.2f} | {floor_name} | {floor:.2f} | {ratio:.1f}x | <= {goal:g}x | "
            f"{'yes' if ratio <= goal else 'no'} |"
        )


if __name__ == "__main__":
    main()
