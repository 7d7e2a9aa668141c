"""What a range run's Dagster bookkeeping costs as the range grows, measured in one run of this script.

For each range length (days ending on --end, default 2023-06-30; or starting on --start), ONE
`dagster asset materialize --select '*' --partition-range A...B` subprocess per code location:
the project (`-m persistence_pipeline.definitions`, embedded data), the trivial code location of
the same shape (`-f benchmarks/trivial_definitions.py`: same partitions, assets and checks, steps
that do no work: the Dagster floor) and the project's history code location
(`-m persistence_pipeline.history`: the same stages on monthly partitions; its range is the months
of the range's first and last day, so a few more days at both ends). Each run gets a fresh
DAGSTER_HOME (default SQLite storage) and a fresh warehouse, checkpoint and dashboard directory in a
temporary directory, and is measured by:

- wall seconds of the subprocess (median of --repeats), and its CPU seconds (user + system: on a
  shared machine they move less than the wall time);
- MB of DAGSTER_HOME after the run (every file under it; it starts empty, so this is its growth);
- events: the rows of the run's own event log (`event_logs` of DAGSTER_HOME/history/runs/<run_id>.db;
  its asset and check events are written a second time to history/runs/index.db).

Under each table: the cost per daily partition (least-squares slope over the lengths) of wall and CPU
seconds, KB and events, and with --breakdown the longest run's events by type and DAGSTER_HOME by part.
The project needs about 90 days of trades (shorter ranges fail for it and leave its cells empty); the
ranges must lie in the embedded data (2013-01-02..2023-09-21).

Each --batch-size value gives a table (0, the default: DAGSTER_EVENT_BATCH_SIZE unset; on the default
SQLite storage a batch is still written one event at a time, on Postgres materializations are written
in one insert); --env NAME=VALUE sets other variables for every run (e.g.
DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1: one planned event per asset instead of one per
asset and partition) and --instance copies a dagster.yaml into every DAGSTER_HOME.

    python -m benchmarks.long_ranges [--days 90 180 365 730] [--end 2023-06-30 | --start 2021-01-04]
        [--batch-size 0 1000] [--repeats 1] [--locations project trivial history] [--trivial PATH]
        [--env NAME=VALUE ...] [--instance dagster.yaml] [--breakdown]

Ten years as one run (2013-07-03...2023-06-30; about 15 minutes for the project on daily partitions,
and 2013-07-01...2023-06-30 in 120 months on the history code location):

    python -m benchmarks.long_ranges --days 3650
    python -m benchmarks.long_ranges --days 90 3650 --locations history

With --goals, one table instead: the 90 days ending on --end on the daily code location and the ten
years ending on --end on the history code location (120 months), each against the trivial code
location on the same partitions (`-a monthly_defs` for the months), measured by CPU seconds, wall
seconds and MB of DAGSTER_HOME, with the ratios and the goals (the 90-day run at most 1.2 times the
trivial one's CPU and 1.1 times its bytes; the ten years within 60 s and 20 MB). The four runs are
repeated --repeats times in turn (each repeat starting one run later), so that a busy spell of a
shared machine falls on all of them; medians. About 3 minutes a repeat on 2 cores:

    python -m benchmarks.long_ranges --goals --repeats 3 [--breakdown]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")
DATA_START, DATA_END = dt.date(2013, 1, 2), dt.date(2023, 9, 21)  # persistence_pipeline.partitions
SHARDS_NOT_OF_A_RUN = {"index", "runs", "schedules"}  # DAGSTER_HOME/history/runs/<run_id>.db is the run's


class RunFailed(RuntimeError):
    """The CLI run failed (its message is the failure line of the run's log)."""


@dataclass
class Measurement:
    seconds: float
    cpu_seconds: float  # user + system of the CLI process: less sensitive than wall time to a busy machine
    megabytes: float
    events: int
    by_type: dict[str, int] = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)


def tree_bytes(root: Path, pattern: str = "*") -> int:
    """Bytes of the files under root (rglob pattern; a SQLite file's -wal and -shm with `name*`)."""
    return sum(path.stat().st_size for path in root.rglob(pattern) if path.is_file())


def run_shard(home: Path) -> Path:
    """The run's own event-log shard: DAGSTER_HOME/history/runs/<run_id>.db (default SQLite storage)."""
    shards = [path for path in home.rglob("*.db") if path.stem not in SHARDS_NOT_OF_A_RUN]
    if len(shards) != 1:
        raise RuntimeError(f"expected one run shard under {home}, found {shards}")
    return shards[0]


def run_events(shard: Path) -> dict[str, int]:
    """Rows of the run's event log by Dagster event type ('log message' for plain log lines)."""
    with sqlite3.connect(shard) as connection:
        rows = connection.execute(
            "SELECT COALESCE(dagster_event_type, 'log message'), COUNT(*) FROM event_logs GROUP BY 1"
        ).fetchall()
    return {str(kind): int(count) for kind, count in rows}


def home_parts(home: Path, shard: Path) -> dict[str, float]:
    """MB of DAGSTER_HOME by part: the run's shard, the cross-run index, compute logs, the rest."""
    parts = {
        "run shard": tree_bytes(shard.parent, shard.name),
        "index.db": tree_bytes(shard.parent, "index.db*"),
        "compute logs": tree_bytes(home / "storage"),
    }
    parts["rest"] = tree_bytes(home) - sum(parts.values())
    return {name: size / 1e6 for name, size in parts.items()}


def measure(
    target: list[str], first: str, last: str, environment: dict[str, str], instance: Path | None = None
) -> Measurement:
    """One CLI range run of `target` over first...last with a fresh DAGSTER_HOME (holding a copy of
    the `instance` dagster.yaml, if any) and a fresh warehouse."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        if instance is not None:
            (home / "dagster.yaml").write_text(instance.read_text())
        env = {
            **os.environ,
            **environment,
            "DAGSTER_HOME": str(home),
            "PERSISTENCE_WAREHOUSE": f"{tmp}/w.duckdb",
            "PERSISTENCE_CHECKPOINTS": f"{tmp}/checkpoints",
            "PERSISTENCE_DASHBOARDS": f"{tmp}/dashboard",
        }
        command = [DAGSTER, "asset", "materialize", *target, "--select", "*"]
        log = Path(tmp) / "cli.log"  # the CLI logs every event: a file, not a pipe held in memory
        with log.open("w") as output:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(
                [*command, "--partition-range", f"{first}...{last}"],
                cwd=REPO,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        if done.returncode != 0:
            lines = log.read_text(errors="replace").splitlines()
            reasons = [line for line in lines if "Failure:" in line or line.startswith("Error")] or lines[-3:]
            raise RunFailed(f"failed: {reasons[0]}")
        shard = run_shard(home)
        by_type = run_events(shard)
        return Measurement(
            seconds, cpu, tree_bytes(home) / 1e6, sum(by_type.values()), by_type, home_parts(home, shard)
        )


def month_range(first: str, last: str) -> tuple[str, str]:
    """The monthly partition keys (first days of months) of the months of first and last."""
    return first[:8] + "01", last[:8] + "01"


def months(first: str, last: str) -> int:
    return (int(last[:4]) - int(first[:4])) * 12 + int(last[5:7]) - int(first[5:7]) + 1


def date_range(days: int, start: dt.date | None, end: dt.date) -> tuple[str, str]:
    first = start if start is not None else end - dt.timedelta(days=days - 1)
    last = first + dt.timedelta(days=days - 1)
    if first < DATA_START or last > DATA_END:
        raise SystemExit(f"{first}...{last} is not inside the embedded data {DATA_START}..{DATA_END}")
    return first.isoformat(), last.isoformat()


def slope(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of ys on xs (at least two distinct xs)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return b, my - b * mx


def quotient(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or denominator is None else numerator / denominator


def fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


Results = dict[tuple[str, int], list[Measurement]]


def print_tables(results: Results, ranges: dict[int, tuple[str, str]], title: str, breakdown: bool) -> None:
    def figure(location: str, days: int, what: str) -> float | None:
        runs = results.get((location, days))
        return None if not runs else statistics.median(float(getattr(m, what)) for m in runs)

    def pair(days: int, what: str, spec: str) -> str:
        return " / ".join(fmt(figure(location, days, what), spec) for location in ["project", "trivial"])

    locations = sorted({location for location, _ in results})
    if not results:
        return
    print(f"\n## {title}\n")
    daily = [days for days in ranges if {("project", days), ("trivial", days)} & results.keys()]
    if daily:
        print(
            "| days | partitions | project s | trivial s | ratio | project MB | trivial MB | events | CPU s |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for days in daily:
        first, last = ranges[days]
        project_s, trivial_s = figure("project", days, "seconds"), figure("trivial", days, "seconds")
        ratio = quotient(project_s, trivial_s)
        print(
            f"| {days} ({first}...{last}) | {days} | {fmt(project_s, '.1f')} | {fmt(trivial_s, '.1f')} "
            f"| {fmt(ratio, '.2f')} | {fmt(figure('project', days, 'megabytes'), '.1f')} "
            f"| {fmt(figure('trivial', days, 'megabytes'), '.1f')} | {pair(days, 'events', ',.0f')} "
            f"| {pair(days, 'cpu_seconds', '.1f')} |"
        )
    if daily:
        print(
            "\n(partitions: daily partitions of the range; MB: DAGSTER_HOME after the run; events: rows of "
            "the run's event log; CPU s: user + system seconds of the CLI process; the last two project / "
            "trivial)\n"
        )
    fitted = [
        loc
        for loc in locations
        if loc != "history" and len([days for days in ranges if (loc, days) in results]) > 1
    ]
    if fitted:  # a slope needs two lengths
        print(
            "| location | s / partition | s fixed | CPU s / partition | KB / partition | MB fixed | events |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
    for location in fitted:
        measured = [days for days in ranges if (location, days) in results]
        per_s, fixed_s = slope(measured, [figure(location, days, "seconds") or 0.0 for days in measured])
        per_cpu, _ = slope(measured, [figure(location, days, "cpu_seconds") or 0.0 for days in measured])
        per_mb, fixed_mb = slope(measured, [figure(location, days, "megabytes") or 0.0 for days in measured])
        per_event, _ = slope(measured, [figure(location, days, "events") or 0.0 for days in measured])
        print(
            f"| {location} | {per_s:.3f} | {fixed_s:.1f} | {per_cpu:.3f} | {1000 * per_mb:.1f} "
            f"| {fixed_mb:.1f} | {per_event:.1f} / partition |"
        )
    history = [days for days in ranges if ("history", days) in results]
    if history:
        print("| days | history run (months) | history s | vs project s | history MB | events | CPU s |")
        print("|---|---|---:|---:|---:|---:|---:|")
    for days in history:
        first, last = month_range(*ranges[days])
        history_s, project_s = figure("history", days, "seconds"), figure("project", days, "seconds")
        ratio = quotient(history_s, project_s)
        print(
            f"| {days} | {first}...{last} ({months(first, last)}) | {fmt(history_s, '.1f')} "
            f"| {fmt(ratio, '.2f')} | {fmt(figure('history', days, 'megabytes'), '.1f')} "
            f"| {fmt(figure('history', days, 'events'), ',.0f')} "
            f"| {fmt(figure('history', days, 'cpu_seconds'), '.1f')} |"
        )
    if history:
        print("\n(vs project s: the history run's wall time over the daily run's of the range)\n")
    if breakdown:
        longest = max(days for _, days in results)
        runs = {
            location: results[location, longest][0]
            for location in locations
            if (location, longest) in results
        }
        print_breakdown(f"The {longest}-day run", runs)


def print_breakdown(title: str, runs: dict[str, Measurement]) -> None:
    print(f"\n{title}: events by type, and MB of DAGSTER_HOME by part\n")
    print("| event type | " + " | ".join(runs) + " |")
    print("|---|" + "---:|" * len(runs))
    for kind in sorted({kind for run in runs.values() for kind in run.by_type}):
        print(f"| {kind} | " + " | ".join(str(run.by_type.get(kind, 0)) for run in runs.values()) + " |")
    for part in ["run shard", "index.db", "compute logs", "rest"]:
        print(f"| MB: {part} | " + " | ".join(f"{run.parts[part]:.2f}" for run in runs.values()) + " |")


@dataclass(frozen=True)
class Goal:
    """A goal of the goals table: the project's figure `what` at most `limit`, or its ratio to the
    trivial location's (`ratio`)."""

    what: str
    limit: float
    ratio: bool

    def verdict(self, value: float | None) -> str:
        if value is None:
            return ""
        text = f"ratio ≤ {self.limit:g}" if self.ratio else f"≤ {self.limit:g} {UNITS[self.what]}"
        return f"{text}: {'met' if value <= self.limit else 'NOT met'}"


UNITS = {"cpu_seconds": "CPU s", "seconds": "wall s", "megabytes": "MB"}
GOALS = {
    "daily": [Goal("cpu_seconds", 1.2, ratio=True), Goal("megabytes", 1.1, ratio=True)],
    "history": [Goal("seconds", 60, ratio=False), Goal("megabytes", 20, ratio=False)],
}


def goals(
    end: dt.date,
    repeats: int,
    trivial: Path,
    environment: dict[str, str],
    instance: Path | None,
    breakdown: bool,
) -> None:
    """The goals table (--goals): a 90-day daily run and ten years on the history code location,
    each against the trivial location on the same partitions, the four runs interleaved."""
    days = date_range(90, None, end)
    years = month_range(*date_range(3650, None, end))
    targets = {
        ("daily", "project"): (["-m", "persistence_pipeline.definitions"], days),
        ("daily", "trivial"): (["-f", str(trivial)], days),
        ("history", "project"): (["-m", "persistence_pipeline.history"], years),
        ("history", "trivial"): (["-f", str(trivial), "-a", "monthly_defs"], years),
    }
    order = list(targets)
    measured: dict[tuple[str, str], list[Measurement]] = {key: [] for key in order}
    for repeat in range(repeats):
        for key in order[repeat % len(order) :] + order[: repeat % len(order)]:
            target, (first, last) = targets[key]
            run = measure(target, first, last, environment, instance)
            measured[key].append(run)
            print(
                f"  {' '.join(key)} {first}...{last}: {run.cpu_seconds:.1f} CPU s, {run.seconds:.1f} s, "
                f"{run.megabytes:.1f} MB",
                file=sys.stderr,
                flush=True,
            )

    def median(key: tuple[str, str], what: str) -> float:
        return statistics.median(float(getattr(run, what)) for run in measured[key])

    titles = {
        "daily": f"90 days, daily, {days[0]}...{days[1]}",
        "history": f"ten years, history, {years[0]}...{years[1]} ({months(*years)} months)",
    }
    print(f"\n## The Dagster shell against its floor (median of {repeats}, interleaved)\n")
    print("| run | measure | project | trivial | ratio | goal |")
    print("|---|---|---:|---:|---:|---|")
    for scenario, title in titles.items():
        for what in ["cpu_seconds", "seconds", "megabytes", "events"]:
            project, floor = median((scenario, "project"), what), median((scenario, "trivial"), what)
            ratio = project / floor
            verdicts = [
                goal.verdict(ratio if goal.ratio else project)
                for goal in GOALS[scenario]
                if goal.what == what
            ]
            spec = ",.0f" if what == "events" else ".1f"
            print(
                f"| {title} | {UNITS.get(what, what)} | {project:{spec}} | {floor:{spec}} | {ratio:.2f} "
                f"| {'; '.join(verdicts)} |"
            )
            title = ""
    print(
        "\n(CPU s: user + system seconds of the CLI process; MB: DAGSTER_HOME after the run; events: rows "
        "of the run's event log; ratio: project / trivial)"
    )
    if breakdown:
        for scenario, title in titles.items():
            print_breakdown(
                title, {location: measured[scenario, location][-1] for location in ["project", "trivial"]}
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, nargs="+", default=[90, 180, 365, 730])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2023, 6, 30))
    where.add_argument("--start", type=dt.date.fromisoformat, default=None)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[0], help="0 = variable unset")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--locations", nargs="+", choices=["project", "trivial", "history"], default=["project", "trivial"]
    )
    parser.add_argument("--trivial", type=Path, default=REPO / "benchmarks" / "trivial_definitions.py")
    parser.add_argument("--env", nargs="+", default=[], metavar="NAME=VALUE")
    parser.add_argument("--instance", type=Path, default=None, help="a dagster.yaml for every DAGSTER_HOME")
    parser.add_argument("--breakdown", action="store_true", help="the longest range's events by type")
    parser.add_argument("--goals", action="store_true", help="the goals table alone (see above)")
    args = parser.parse_args()

    os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)  # each table sets it, or not
    if args.goals:
        environment = dict(item.split("=", 1) for item in args.env)
        goals(args.end, args.repeats, args.trivial.resolve(), environment, args.instance, args.breakdown)
        return
    targets = {
        "project": ["-m", "persistence_pipeline.definitions"],
        "trivial": ["-f", str(args.trivial.resolve())],
        "history": ["-m", "persistence_pipeline.history"],
    }
    ranges = {days: date_range(days, args.start, args.end) for days in sorted(args.days)}
    for batch_size in args.batch_size:
        environment = dict(item.split("=", 1) for item in args.env)
        if batch_size:
            environment["DAGSTER_EVENT_BATCH_SIZE"] = str(batch_size)
        results: Results = {}
        for days, (first, last) in ranges.items():
            for location in args.locations:
                try:
                    keys = month_range(first, last) if location == "history" else (first, last)
                    runs = [
                        measure(targets[location], *keys, environment, args.instance)
                        for _ in range(args.repeats)
                    ]
                except RunFailed as failure:  # e.g. too few trades for the model: its cells stay empty
                    print(f"  {location} {first}...{last}: {failure}", file=sys.stderr, flush=True)
                    continue
                results[location, days] = runs
                median = statistics.median(run.seconds for run in runs)
                print(f"  {location} {keys[0]}...{keys[1]}: {median:.1f} s", file=sys.stderr, flush=True)
        setting = f"DAGSTER_EVENT_BATCH_SIZE={batch_size}" if batch_size else "DAGSTER_EVENT_BATCH_SIZE unset"
        where_ = f"starting {args.start}" if args.start else f"ending {args.end}"
        instance = [f"instance {args.instance.name}"] if args.instance else []
        title = (
            f"Range runs {where_}, {', '.join([setting, *args.env, *instance])} (median of {args.repeats})"
        )
        print_tables(results, ranges, title, args.breakdown)


if __name__ == "__main__":
    main()
