"""A run is whole or absent: a run that fails or is killed at any stage (or inside the commit that
publishes it) leaves every public table and file as it was, byte for byte; readers only ever see
complete runs; and the next run warm-starts from the last complete one. Failures are injected at
the failpoints of storage/ (PERSISTENCE_FAILPOINT) and by real bad input."""

import hashlib

import duckdb
import numpy as np
import pandas as pd
import pytest

from persistence_pipeline.core.strategies import generate_trades
from persistence_pipeline.resources import ModelSettings, TradeSource
from persistence_pipeline.source_files import load_embedded_bars
from persistence_pipeline.storage.contract import FIXED_TABLES
from persistence_pipeline.storage.database import FAILPOINT_VARIABLE, Database, InjectedFailure
from persistence_pipeline.storage.publish import staged_runs
from persistence_pipeline_tests.conftest import Q1, Q2, EmbeddedRuns, Project, copy_of

pytestmark = pytest.mark.e2e

Q1_KEY, Q2_KEY = f"{Q1[0]}..{Q1[1]}/ridge", f"{Q2[0]}..{Q2[1]}/ridge"
# where a run can stop: after each stage has staged its rows, and inside the publishing commit
FAILPOINTS = [
    "staged:trades",
    "staged:profit_model",
    "staged:feature_importance",
    "staged:feature_stability",
    "staged:feature_alpha",
    "staged:feature_priors",
    "publish",
]


def fingerprint(project: Project) -> dict[str, str]:
    """A content hash of every public table (rows in a fixed order) and of every public file."""
    hashes = {}
    with duckdb.connect(str(project.warehouse_path), read_only=True) as con:
        for table in FIXED_TABLES:
            rows = con.execute(f"SELECT * FROM main.{table} ORDER BY ALL").fetchall()
            columns = [d[0] for d in con.execute(f"SELECT * FROM main.{table} LIMIT 0").description]
            hashes[table] = hashlib.sha256(repr((columns, rows)).encode()).hexdigest()
    for folder in ("checkpoints", "dashboard"):
        for path in sorted((project.root / folder).rglob("*")):
            if path.is_file() and ".staging" not in path.parts:
                hashes[str(path.relative_to(project.root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


@pytest.mark.parametrize("point", FAILPOINTS)
def test_a_rerun_failing_at_any_stage_leaves_every_table_and_file_as_it_was(
    embedded_runs: EmbeddedRuns, tmp_path, monkeypatch, point
):
    """Re-materializing a complete run (the daily second quarter, again as its months in the history
    code location: the same run, staged and published by the same code): its old rows must survive."""
    project = copy_of(embedded_runs.two, tmp_path)
    before = fingerprint(project)
    monkeypatch.setenv(FAILPOINT_VARIABLE, point)
    with pytest.raises(InjectedFailure, match=f"injected failure at {point}"):
        project.materialize("2021-04-01", "2021-06-01", monthly=True)
    assert fingerprint(project) == before


def test_a_new_run_failing_before_its_publication_is_absent_and_the_next_run_warm_starts(
    embedded_runs: EmbeddedRuns, tmp_path, monkeypatch
):
    project = copy_of(embedded_runs.one, tmp_path)
    before = fingerprint(project)
    monkeypatch.setenv(FAILPOINT_VARIABLE, "staged:feature_alpha")
    with pytest.raises(InjectedFailure):
        project.materialize(*Q2)
    assert fingerprint(project) == before
    assert project.table("run_metrics")["run_key"].tolist() == [Q1_KEY]
    monkeypatch.delenv(FAILPOINT_VARIABLE)
    project.materialize(*Q2)
    whole = embedded_runs.two
    for table, key in [("run_metrics", "run_key"), ("stability_summary", "as_of_run_key")]:
        again = project.table(table).drop(columns=["dagster_run_id", "created_at"], errors="ignore")
        expected = whole.table(table).drop(columns=["dagster_run_id", "created_at"], errors="ignore")
        pd.testing.assert_frame_equal(
            again.sort_values(key).reset_index(drop=True), expected.sort_values(key).reset_index(drop=True)
        )
    summary = project.table("stability_summary").set_index("as_of_run_key").loc[Q2_KEY]
    assert summary["n_runs"] == 2 and np.isfinite(summary["kendall_w"])
    assert project.table("run_metrics").set_index("run_key").loc[Q2_KEY, "priors_from_run_key"] == Q1_KEY
    assert staged_runs(Database(str(project.warehouse_path))) == []  # the failed run's staging is gone


def test_a_shorter_run_that_cannot_train_leaves_the_longer_runs_trades(embedded_runs: EmbeddedRuns, tmp_path):
    """Issue 10 (a): a log of clean trades passes the trades stage (enough labelled trades), then no
    walk-forward fold has enough training trades and the model fails; the stored run of the quarter
    must keep its trades and its counts."""
    project = copy_of(embedded_runs.one, tmp_path / "warehouse")
    before = fingerprint(project)
    trades = generate_trades(load_embedded_bars())
    window = trades[(trades["entry_time"] >= "2021-01-04") & (trades["entry_time"] < "2021-03-01")]
    log = window.sort_values("entry_time").drop(columns="return").head(110).copy()
    for column in ("entry_time", "exit_time"):
        log[column] = log[column].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    (tmp_path / "log").mkdir()
    log.to_csv(tmp_path / "log" / "trades.csv", index=False)
    source = TradeSource(kind="trade_log_dir", path=str(tmp_path / "log"))
    other = Project(project.root, source, ModelSettings())
    result = other.materialize("2021-01-04", "2021-02-28", raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "profit_model" and "walk-forward fold" in str(failure.event_specific_data)
    assert fingerprint(project) == before
    assert len(project.table("trades")) == project.table("run_metrics").loc[0, "n_trades"]


def test_readers_outside_the_run_see_no_staged_rows(embedded_runs: EmbeddedRuns, tmp_path, monkeypatch):
    project = copy_of(embedded_runs.one, tmp_path)
    monkeypatch.setenv(FAILPOINT_VARIABLE, "staged:feature_priors")
    with pytest.raises(InjectedFailure):
        project.materialize(*Q2)
    with duckdb.connect(str(project.warehouse_path), read_only=True) as con:
        staged = con.execute("SELECT count(*) FROM staging.run_metrics").fetchall()[0][0]
        public = con.execute("SELECT run_key FROM run_metrics").fetchall()
    assert staged == 1 and public == [(Q1_KEY,)]  # the failed run's rows wait in staging, unseen
