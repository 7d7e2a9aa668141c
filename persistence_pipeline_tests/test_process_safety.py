"""What real use does through the CLI (`dagster asset materialize`): a partition range is exactly one
Dagster run, the same range in two fresh processes gives identical tables, checkpoints and PNG, and
two runs at once on one warehouse both finish. (Runs killed mid-write: test_whole_or_absent.py.)"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from persistence_pipeline.definitions import ASSETS
from persistence_pipeline_tests.conftest import dagster_home

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
]


def cli(
    folder: Path, first: str, last: str, extra_env: dict[str, str] | None = None, **popen
) -> subprocess.Popen:
    """`dagster asset materialize --select '*' --partition-range first...last` with everything under folder.
    The Dagster instance is created first: two processes creating the same new SQLite instance at once
    race in Dagster's own schema migration (a one-time set-up, not the warehouse)."""
    home = dagster_home(folder)
    if not home.exists():
        home.mkdir(parents=True)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs(limit=1)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PERSISTENCE_WAREHOUSE": str(folder / "warehouse.duckdb"),
        "PERSISTENCE_CHECKPOINTS": str(folder / "checkpoints"),
        "PERSISTENCE_DASHBOARDS": str(folder / "dashboard"),
        **(extra_env or {}),
    }
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "-m",
        "persistence_pipeline.definitions",
        "--select",
        "*",
        "--partition-range",
        f"{first}...{last}",
    ]
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


def assert_exactly_one_run(folder: Path, first: str, last: str) -> None:
    """The CLI's partition range ran as ONE Dagster run: its tags, every asset's latest
    materialization and the checks belong to it, and run_metrics names it."""
    with dg.DagsterInstance.from_config(str(dagster_home(folder))) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1
        run = runs[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/asset_partition_range_start"] == first
        assert run.tags["dagster/asset_partition_range_end"] == last
        for key in {key for asset in ASSETS for key in asset.keys}:
            event = instance.get_latest_materialization_event(key)
            assert event is not None and event.run_id == run.run_id
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("trades"), "trades_are_valid"), limit=1
        )
        assert checks[0].run_id == run.run_id
    with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT run_key, dagster_run_id FROM run_metrics").fetchall() == [
            (f"{first}..{last}/ridge", run.run_id)
        ]


def only_the_first_quarter(stored: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    first = "2021-01-04..2021-03-31/ridge"
    kept = {}
    for name, frame in stored.items():
        if "entry_time" in frame:
            frame = frame[frame["entry_time"] < pd.Timestamp("2021-04-01", tz="UTC")]
        for key in ("run_key", "as_of_run_key"):
            if key in frame:
                frame = frame[frame[key] == first]
        kept[name] = frame.reset_index(drop=True)
    return kept


def test_cli_ranges_are_one_run_each_deterministic_across_processes_and_concurrent_on_one_warehouse(tmp_path):
    """Three CLI processes at once: the first quarter in folder a, and the first and second quarters
    together on ONE warehouse in folder b. Each range is exactly one Dagster run; both runs of b
    finish; the first quarter's rows, checkpoint bytes and PNG are identical in a and b."""
    alone = cli(tmp_path / "a", "2021-01-04", "2021-03-31")
    first, second = (
        cli(tmp_path / "b", "2021-01-04", "2021-03-31"),
        cli(tmp_path / "b", "2021-04-01", "2021-06-30"),
    )
    finish(alone), finish(first), finish(second)
    assert_exactly_one_run(tmp_path / "a", "2021-01-04", "2021-03-31")
    a, b = tables(tmp_path / "a" / "warehouse.duckdb"), tables(tmp_path / "b" / "warehouse.duckdb")
    assert sorted(b["run_metrics"]["run_key"]) == [
        "2021-01-04..2021-03-31/ridge",
        "2021-04-01..2021-06-30/ridge",
    ]
    assert b["trades"]["trade_id"].is_unique
    assert b["feature_importance_history"].groupby("run_key").size().tolist() == [24, 24]
    b_first = only_the_first_quarter(b)
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b_first[name], obj=name)
    assert len(a["feature_importance_history"]) == 24 and len(a["trades"]) == 213
    png = "dashboard/2021-01-04..2021-03-31_ridge.png"
    assert (tmp_path / "a" / png).read_bytes() == (tmp_path / "b" / png).read_bytes()


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
