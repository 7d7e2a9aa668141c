"""`python -m persistence_pipeline run A...B`: one range run through Dagster's own CLI, with a
quiet console that ends with the answer.

`dagster asset materialize` prints every Dagster event (a six-month run: about 3,000 lines, most of
them check evaluations per day) and ends with RUN_SUCCESS; a failure's message sits above a stack
trace. This command runs exactly that CLI (the same run, events and lineage, stored in
$DAGSTER_HOME), writes its whole output to a log file, and prints:

- before the run, what it runs and where the full log goes;
- on success, a short summary from the warehouse: the run key, the OOS rank IC with the trades and
  folds it rests on, the suspect flag, the features with reliable alpha (or that there are none
  yet), and where the dashboard and `report` are;
- on failure, the project's own message, last (for a step's failure, its description; for a range
  the partitions do not hold or an asset that does not exist, checked before the run).
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg

from persistence_pipeline.core.summary import (
    NO_RELIABLE_ALPHA,
    by_evidence,
    oos_caveat_of,
    q_text,
    reliable,
)
from persistence_pipeline.definitions import defs
from persistence_pipeline.errors import ReversedRangeError
from persistence_pipeline.partitions import daily_partitions, refuse_reversed
from persistence_pipeline.storage.latest_run import WarehouseUnreadable, latest_run

LOCATION_MODULE = "persistence_pipeline.definitions"
RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.\.(\d{4}-\d{2}-\d{2})$")
RUN_ID = re.compile(  # a Dagster log line: "... - dagster - LEVEL - JOB - RUN_ID - ..."
    r" - dagster - \w+ - [\w.]+ - ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) - "
)
FAILED, BAD_ARGUMENT = 1, 2


class RunRefused(ValueError):
    """The run cannot start as asked: the message says why and what to change."""


def check_range(text: str, first_partition: str, last_partition: str | None) -> tuple[str, str]:
    """The range's first and last day, or RunRefused naming what is wrong: the format, a reversed
    range, or days outside the partitions (naming the first and last and what moves them)."""
    match = RANGE.match(text)
    if not match:
        raise RunRefused(
            f"the range {text!r} is not FIRST...LAST with days as YYYY-MM-DD (e.g. 2021-01-04...2021-06-30)"
        )
    first, last = match.groups()
    for day in (first, last):
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            raise RunRefused(f"{day!r} in the range {text!r} is not a calendar day") from None
    try:
        refuse_reversed(first, last)
    except ReversedRangeError as reversed_range:
        raise RunRefused(str(reversed_range)) from None
    span = f"the partitions run from {first_partition} to {last_partition or 'today'}"
    moves = "PERSISTENCE_PARTITIONS_START and PERSISTENCE_PARTITIONS_END (YYYY-MM-DD) move them"
    if first < first_partition:
        raise RunRefused(f"the range starts on {first}, before the first partition: {span}; {moves}")
    if last_partition is not None and last > last_partition:
        raise RunRefused(f"the range ends on {last}, after the last partition: {span}; {moves}")
    return first, last


def check_selection(select: str, asset_names: list[str]) -> None:
    """RunRefused for a selected asset that does not exist, with the closest names. '*' and
    selections with Dagster's graph syntax (+, *, :) are left to Dagster."""
    if select.strip() == "*" or re.search(r"[+*:()]", select):
        return
    for name in (part.strip() for part in select.split(",")):
        if name and name not in asset_names:
            close = difflib.get_close_matches(name, asset_names, n=3)
            hint = (
                f"; did you mean {', '.join(close)}?" if close else f"; the assets: {', '.join(asset_names)}"
            )
            raise RunRefused(f"no asset is named {name!r}{hint}")


def partitions_span() -> tuple[str, str | None, list[str]]:
    """The first and last daily partition (None: up to yesterday) and the main location's assets."""
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    names = sorted(key.to_user_string() for key in keys)
    first = daily_partitions.start.date().isoformat()
    end = daily_partitions.end
    return first, (end - dt.timedelta(days=1)).date().isoformat() if end is not None else None, names


def quiet_instance() -> dg.DagsterInstance:
    """The $DAGSTER_HOME instance, without Dagster's "no dagster.yaml found" warning (the run's own
    log has said so)."""
    logger = logging.getLogger("dagster")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return dg.DagsterInstance.get()
    finally:
        logger.setLevel(level)


def check_line(run_id: str) -> str:
    """The run's asset checks in one line: how many passed, and the ones that failed (a check records
    one evaluation per day of the range; a check counts once)."""
    results: dict[str, bool] = {}
    for record in quiet_instance().all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data if record.dagster_event else None
        if isinstance(evaluation, dg.AssetCheckEvaluation):
            name = evaluation.check_name
            results[name] = results.get(name, True) and evaluation.passed
    failed = sorted(name for name, passed in results.items() if not passed)
    if not failed:
        return f"  checks: all {len(results)} passed"
    names = ", ".join(failed)
    return f"  checks: {len(failed)} of {len(results)} failed: {names} (the UI's Checks tab says why)"


def failure_message(run_id: str) -> str | None:
    """The description of the run's first failed step (the project's own message for bad input),
    or the first line of its error; None when the instance has no failure for the run."""
    for record in quiet_instance().all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        data = event.step_failure_data if event else None
        if data is None:
            continue
        if data.user_failure_data is not None and data.user_failure_data.description:
            return f"{event.step_key}: {data.user_failure_data.description}"  # type: ignore[union-attr]
        if data.error is not None:
            return f"{event.step_key}: {data.error.message.strip().splitlines()[0]}"  # type: ignore[union-attr]
    return None


def summary_lines(warehouse: Path, run_key: str) -> list[str]:
    """The answer of the run, from the warehouse, in a few lines."""
    try:
        latest = latest_run(warehouse)
    except WarehouseUnreadable as problem:
        return [f"the run succeeded, but its results cannot be read: {problem}"]
    run = latest.latest
    lines = [
        f"run {run['run_key']}" + ("" if run["run_key"] == run_key else f" (the latest; this run: {run_key})")
    ]
    n_oos, n_folds = int(run["n_oos"]), int(run["n_folds"])
    ic = f"{run['oos_rank_ic']:+.4f}"
    folds = f"{n_folds} fold{'s' if n_folds != 1 else ''}"
    lines.append(f"  OOS rank IC {ic} on {n_oos} trades in {folds}{oos_caveat_of(run)}")
    suspects = latest.suspects
    if (suspects is not None and len(suspects)) or (
        latest.quarantined is not None and len(latest.quarantined)
    ):
        lines.append(
            "  SUSPECT RUN: a feature was quarantined or named by the out-of-sample check (see `report`)"
        )
    alpha = latest.alpha
    if len(alpha) and alpha["alpha_score"].notna().any():
        found = by_evidence(reliable(alpha)).head(5)
        lines.append(
            "  alpha: "
            + (
                ", ".join(
                    f"{f} (q {q_text(q)})" for f, q in zip(found["feature"], found["ic_q_value"], strict=True)
                )
                if len(found)
                else NO_RELIABLE_ALPHA
            )
        )
    dashboards = Path(os.environ.get("PERSISTENCE_DASHBOARDS") or "data/dashboard")
    lines += [
        f"  warehouse {warehouse}; dashboard {dashboards / 'latest.png'}",
        "  more: python -m persistence_pipeline report",
    ]
    return lines


def dagster_home() -> Path:
    """$DAGSTER_HOME, or ./.dagster_home (created) when it is not set."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run(range_text: str, select: str, warehouse: Path) -> int:
    try:
        first_partition, last_partition, names = partitions_span()
        first, last = check_range(range_text, first_partition, last_partition)
        check_selection(select, names)
    except RunRefused as problem:
        print(f"error: {problem}", file=sys.stderr)
        return BAD_ARGUMENT
    home = dagster_home()
    logs = home / "run_logs"
    logs.mkdir(exist_ok=True)
    log = logs / f"{first}...{last}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.log"
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", LOCATION_MODULE,
        "--select", select, "--partition-range", f"{first}...{last}",
    ]  # fmt: skip
    print(f"running {first}...{last} (assets: {select}); the full Dagster log: {log}", flush=True)
    with log.open("w") as out:
        finished = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    text = log.read_text(errors="replace")
    run_ids = RUN_ID.findall(text)
    if finished.returncode != 0 or "RUN_FAILURE" in text:
        message = failure_message(run_ids[0]) if run_ids else None
        tail = [line for line in text.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        print(f"error: the run failed. {message or tail[0]}", file=sys.stderr)
        return FAILED
    kind = os.environ.get("PERSISTENCE_MODEL_KIND") or "ridge"
    lines = summary_lines(warehouse, f"{first}..{last}/{kind}")
    print("\n".join([*lines[:-2], *([check_line(run_ids[0])] if run_ids else []), *lines[-2:]]))
    return 0
