"""The headline CLI path, run as a user runs it: one range, one Dagster run, every asset."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from persistence_pipeline.definitions import ASSETS

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]


def test_cli_partition_range_is_exactly_one_run(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PERSISTENCE_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "PERSISTENCE_CHECKPOINTS": str(tmp_path / "checkpoints"),
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
        "2021-01-04...2021-06-30",
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1
        run = runs[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/asset_partition_range_start"] == "2021-01-04"
        assert run.tags["dagster/asset_partition_range_end"] == "2021-06-30"
        every_asset = {key for asset in ASSETS for key in asset.keys}
        for key in every_asset:
            event = instance.get_latest_materialization_event(key)
            assert event is not None and event.run_id == run.run_id
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("trades"), "trades_are_valid"), limit=1
        )
        assert checks[0].run_id == run.run_id

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT run_key, dagster_run_id FROM run_metrics").fetchall() == [
            ("2021-01-04..2021-06-30/ridge", run.run_id)
        ]
        assert con.execute("SELECT count(*) FROM trades").fetchone() == (564,)
        assert con.execute("SELECT count(*) FROM feature_importance_history").fetchone() == (19,)
