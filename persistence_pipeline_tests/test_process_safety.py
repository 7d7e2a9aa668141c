"""What real use does to a warehouse: the same range in two fresh processes, two runs at once on one
warehouse, and a run killed (SIGKILL) in the middle of writing."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

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


def cli(folder: Path, first: str, last: str, **popen) -> subprocess.Popen:
    """`dagster asset materialize --select '*' --partition-range first...last` with everything under folder.
    The Dagster instance is created first: two processes creating the same new SQLite instance at once
    race in Dagster's own schema migration (a one-time set-up, not the warehouse)."""
    if not (folder / "home").exists():
        (folder / "home").mkdir(parents=True)
        with dg.DagsterInstance.from_config(str(folder / "home")) as instance:
            instance.get_runs(limit=1)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(folder / "home"),
        "PERSISTENCE_WAREHOUSE": str(folder / "warehouse.duckdb"),
        "PERSISTENCE_CHECKPOINTS": str(folder / "checkpoints"),
        "PERSISTENCE_DASHBOARDS": str(folder / "dashboard"),
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


def test_same_range_in_two_fresh_processes_gives_identical_tables_and_png(tmp_path):
    first, second = (
        cli(tmp_path / "a", "2021-01-04", "2021-03-31"),
        cli(tmp_path / "b", "2021-01-04", "2021-03-31"),
    )
    finish(first), finish(second)
    a, b = tables(tmp_path / "a" / "warehouse.duckdb"), tables(tmp_path / "b" / "warehouse.duckdb")
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
    assert len(a["feature_importance_history"]) == 19
    png = lambda folder: (folder / "dashboard" / "latest.png").read_bytes()  # noqa: E731
    assert png(tmp_path / "a") == png(tmp_path / "b")


def test_two_runs_at_once_on_one_warehouse_both_finish(tmp_path):
    one, two = cli(tmp_path, "2021-01-04", "2021-03-31"), cli(tmp_path, "2021-04-01", "2021-06-30")
    finish(one), finish(two)
    stored = tables(tmp_path / "warehouse.duckdb")
    assert sorted(stored["run_metrics"]["run_key"]) == [
        "2021-01-04..2021-03-31/ridge",
        "2021-04-01..2021-06-30/ridge",
    ]
    assert stored["trades"]["trade_id"].is_unique
    assert stored["feature_importance_history"].groupby("run_key").size().tolist() == [19, 19]


def test_a_run_killed_while_writing_leaves_no_partial_rows(tmp_path):
    finish(cli(tmp_path, "2021-01-04", "2021-03-31"))
    before = tables(tmp_path / "warehouse.duckdb")
    victim = cli(tmp_path, "2021-04-01", "2021-06-30", start_new_session=True)
    deadline = time.monotonic() + 300
    assert victim.stdout is not None
    for line in victim.stdout:  # kill it once it is writing the model's rows
        if 'Started execution of step "feature_importance"' in line or time.monotonic() > deadline:
            break
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    killed = tables(tmp_path / "warehouse.duckdb")  # the file opens: the unfinished transaction is gone
    first_run = "2021-01-04..2021-03-31/ridge"
    for name in [
        "run_metrics",
        "checkpoints",
        "feature_importance_history",
        "feature_stability",
        "feature_alpha",
    ]:
        key = "run_key" if "run_key" in killed[name] else "as_of_run_key"
        kept = killed[name][killed[name][key] == first_run].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            kept, before[name], obj=name, check_dtype=False
        )  # NULLs of run B widen dtypes
    earlier_trades = killed["trades"][killed["trades"]["entry_time"] < pd.Timestamp("2021-04-01", tz="UTC")]
    pd.testing.assert_frame_equal(earlier_trades.reset_index(drop=True), before["trades"], obj="trades")
    # every table holds whole runs: a run's importance rows are all there or none are
    assert set(killed["feature_importance_history"].groupby("run_key").size()) <= {19}
    finish(cli(tmp_path, "2021-04-01", "2021-06-30"))
    after = tables(tmp_path / "warehouse.duckdb")
    assert sorted(after["run_metrics"]["run_key"]) == [
        "2021-01-04..2021-03-31/ridge",
        "2021-04-01..2021-06-30/ridge",
    ]
    assert after["trades"]["trade_id"].is_unique
    assert after["feature_importance_history"].groupby("run_key").size().tolist() == [19, 19]
    first = after["feature_importance_history"]
    pd.testing.assert_frame_equal(
        first[first["run_key"].str.startswith("2021-01-04")].reset_index(drop=True),
        before["feature_importance_history"],
    )
    assert len(list((tmp_path / "checkpoints").rglob("*.skops"))) == 2
