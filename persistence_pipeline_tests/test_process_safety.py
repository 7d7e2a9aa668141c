"""What real use does through the CLI (`dagster asset materialize`): a partition range is exactly one
Dagster run, two runs at once on one warehouse take it one after the other, and CLI processes give
the tables, checkpoints and PNGs of the same ranges run in order in this process. (Runs killed
mid-write: test_whole_or_absent.py; runs in reverse order: test_run_order.py.)"""

import subprocess
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from persistence_pipeline.definitions import ASSETS
from persistence_pipeline.storage.database import Database
from persistence_pipeline.storage.staleness import stale_runs
from persistence_pipeline_tests.conftest import (
    Q1,
    Q2,
    EmbeddedRuns,
    dagster_home,
    materialize_command,
    project_env,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
VOLATILE = {"dagster_run_id", "created_at", "loaded_at"}
TABLES = [
    "trades",
    "run_metrics",
    "oos_predictions",
    "checkpoints",
    "feature_importance_history",
    "importance_changes",
    "feature_stability",
    "stability_summary",
    "feature_alpha",
    "feature_priors",
    "data_loss",
    "feature_coverage",
    "run_inputs",
    "feature_ic_series",
    "feature_segments",
    "excluded_features",
    "regime_weights",
    "sizing_performance",
    "ensemble_predictions",
    "ensemble_metrics",
    "ensemble_importance",
    "model_agreement",
]


def cli(
    folder: Path,
    first: str,
    last: str,
    extra_env: dict[str, str] | None = None,
    module: str = "persistence_pipeline.definitions",
    **popen,
) -> subprocess.Popen:
    """`dagster asset materialize -m module --select '*' --partition-range first...last` with everything
    under folder.
    The Dagster instance is created first: two processes creating the same new SQLite instance at once
    race in Dagster's own schema migration (a one-time set-up, not the warehouse)."""
    home = dagster_home(folder)
    if not home.exists():
        home.mkdir(parents=True)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs(limit=1)
    env = {**project_env(folder, home), **(extra_env or {})}
    command = materialize_command(first, last, module)
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
    )


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output[-3000:]
    return output


def tables(warehouse: Path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        out = {}
        for name in TABLES:
            frame = con.execute(f"SELECT * FROM {name}").df()
            frame = frame.drop(columns=[c for c in frame.columns if c in VOLATILE])
            if "path" in frame:
                frame["path"] = frame["path"].map(lambda p: Path(p).name)
            for column in frame.columns:  # one spelling of "missing" for text columns, whatever their dtype
                if not pd.api.types.is_numeric_dtype(
                    frame[column]
                ) and not pd.api.types.is_datetime64_any_dtype(frame[column]):
                    frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
            key = [c for c in ("run_key", "as_of_run_key", "trade_id", "feature", "reason") if c in frame]
            out[name] = frame.sort_values(key).reset_index(drop=True)
        return out


def assert_one_run_per_range(folder: Path, ranges: list[tuple[str, str]]) -> None:
    """Each CLI partition range ran as ONE Dagster run (its tags), run_metrics names the last run of
    each range, and the assets' latest materializations and check results belong to one run."""
    with dg.DagsterInstance.from_config(str(dagster_home(folder))) as instance:
        runs = [record.dagster_run for record in instance.get_run_records()]  # newest first
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        tags = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
        tagged = [(run.tags[tags[0]], run.tags[tags[1]]) for run in runs]
        assert sorted(tagged) == sorted(ranges)
        latest = {
            key: instance.get_latest_materialization_event(key) for key in {k for a in ASSETS for k in a.keys}
        }
        last_to_run = {event.run_id for event in latest.values() if event is not None}
        assert len(last_to_run) == 1 and len(latest) == 8  # every asset, from one run: the last to run
        # the newest check RESULT by evaluation time: a record is created when its run plans the check,
        # before the run waits for the warehouse, so ids follow which process planned first
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("trades"), "trades_are_valid"), limit=10_000
        )
        evaluated = {
            record.event.timestamp: record.run_id
            for record in history
            if record.event is not None
            and record.event.dagster_event is not None
            and record.event.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        }
        assert evaluated and {evaluated[max(evaluated)]} == last_to_run
        last_of_range = dict(zip(reversed(tagged), [run.run_id for run in reversed(runs)], strict=True))
    with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as con:
        stored = con.execute("SELECT run_key, dagster_run_id FROM run_metrics ORDER BY run_key").fetchall()
    assert stored == [(f"{a}..{b}/ridge", last_of_range[(a, b)]) for a, b in sorted(set(ranges))]


def assert_runs_did_not_interleave(folder: Path) -> None:
    """From its trades to its dashboard, each run of the folder had the warehouse to itself."""
    with dg.DagsterInstance.from_config(str(dagster_home(folder))) as instance:
        spans = []
        for run in instance.get_runs():
            stamps = {
                record.event_log_entry.dagster_event.asset_key.to_user_string(): record.timestamp
                for record in instance.get_records_for_run(
                    run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10_000
                ).records
                if record.event_log_entry.dagster_event and record.event_log_entry.dagster_event.asset_key
            }
            spans.append((stamps["trades"], stamps["persistence_dashboard"]))
    (start_a, end_a), (start_b, end_b) = sorted(spans)
    assert end_a < start_b, spans


def test_cli_ranges_are_one_run_each_concurrent_on_one_warehouse_and_give_the_sequential_tables(
    tmp_path, embedded_runs: EmbeddedRuns
):
    """Two CLI processes at once on ONE warehouse, the first and the second quarter. Each range is
    exactly one Dagster run; the runs take the warehouse one after the other; whichever went first,
    after the stale run (if any) is materialized again, the tables, checkpoint bytes and dashboard
    PNGs are those of the two quarters run in order in this process (`embedded_runs`): deterministic
    across processes and whatever the order."""
    folder = tmp_path / "b"
    first, second = cli(folder, *Q1), cli(folder, *Q2)
    finish(first), finish(second)
    assert_runs_did_not_interleave(folder)
    stale = stale_runs(Database(str(folder / "warehouse.duckdb")), "ridge")
    assert stale["run_key"].tolist() in ([], [f"{Q2[0]}..{Q2[1]}/ridge"])  # Q2 went first: stale
    for row in stale.itertuples():
        finish(cli(folder, str(row.range_start.date()), str(row.range_end.date())))
    assert_one_run_per_range(folder, [Q1, Q2, *([Q2] if len(stale) else [])])
    concurrent, sequential = tables(folder / "warehouse.duckdb"), tables(embedded_runs.two.warehouse_path)
    assert concurrent["trades"]["trade_id"].is_unique
    assert concurrent["feature_importance_history"].groupby("run_key").size().tolist() == [24, 24]
    for name in TABLES:
        pd.testing.assert_frame_equal(concurrent[name], sequential[name], obj=name)
    for png in ("2021-01-04..2021-03-31_ridge.png", "2021-04-01..2021-06-30_ridge.png", "latest.png"):
        assert (folder / "dashboard" / png).read_bytes() == (
            embedded_runs.two.root / "dashboard" / png
        ).read_bytes()


def test_a_bad_input_run_ends_with_the_projects_message_and_no_stack_trace_of_ours(tmp_path):
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "trades.csv").write_text("trade_id,symbol\nt1,AAA\n")
    run = cli(
        tmp_path,
        "2021-01-04",
        "2021-03-31",
        extra_env={
            "PERSISTENCE_TRADE_SOURCE": "trade_log_dir",
            "PERSISTENCE_TRADE_PATH": str(tmp_path / "log"),
        },
    )
    output, _ = run.communicate(timeout=600)
    assert run.returncode != 0
    message = f"file {tmp_path / 'log' / 'trades.csv'}: required columns are missing"
    failure = [line for line in output.splitlines() if "STEP_FAILURE" in line]
    assert len(failure) == 1 and 'Execution of step "trades" failed' in failure[0]
    assert message in output  # the step failure's description: dg.Failure(our message)
    assert "persistence_pipeline/core" not in output and "InputDataError" not in output
