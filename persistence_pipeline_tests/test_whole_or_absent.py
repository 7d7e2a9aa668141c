"""A run is whole or absent: a run that fails or is killed at any stage (or inside the commit that
publishes it) leaves every public table and file as it was, byte for byte; readers only ever see
complete runs; and the next run warm-starts from the last complete one. Failures are injected at
the failpoints of storage/ (PERSISTENCE_FAILPOINT) and by real bad input."""

import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from persistence_pipeline.core.market_data import load_embedded_bars
from persistence_pipeline.core.strategies import generate_trades
from persistence_pipeline.resources import CheckpointStore, ModelSettings, TradeSource
from persistence_pipeline.storage.contract import FIXED_TABLES
from persistence_pipeline.storage.database import FAILPOINT_VARIABLE, InjectedFailure
from persistence_pipeline_tests.conftest import Q1, Q2, EmbeddedRuns, Project, copy_of
from persistence_pipeline_tests.test_process_safety import cli

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
    project = copy_of(embedded_runs.two, tmp_path)
    before = fingerprint(project)
    monkeypatch.setenv(FAILPOINT_VARIABLE, point)
    with pytest.raises(InjectedFailure, match=f"injected failure at {point}"):
        project.materialize(*Q2)  # re-materializing a complete run: its old rows must survive
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


def test_a_run_killed_at_a_stage_or_inside_its_publishing_commit_leaves_no_trace(
    embedded_runs: EmbeddedRuns, tmp_path
):
    """SIGKILL of the CLI process (`dagster asset materialize`) after a stage has staged its rows,
    and inside the transaction that publishes the run; then the same range runs whole."""
    project = copy_of(embedded_runs.one, tmp_path)
    before = fingerprint(project)
    for point in ["staged:profit_model:kill", "publish:kill"]:
        victim = cli(tmp_path, *Q2, extra_env={FAILPOINT_VARIABLE: point})
        victim.communicate(timeout=900)
        assert victim.returncode == -signal.SIGKILL, point
        assert fingerprint(project) == before, point  # the file opens; the killed transaction is gone
    cut = cli(tmp_path, *Q2, extra_env={FAILPOINT_VARIABLE: "published:kill"})
    cut.communicate(timeout=900)
    assert cut.returncode == -signal.SIGKILL
    index = project.table("checkpoints").set_index("run_key").loc[Q2_KEY]
    assert not Path(index["path"]).exists()  # published; killed before its checkpoint moved into place
    loaded = CheckpointStore(directory=str(tmp_path / "checkpoints")).load(index["path"], index["sha256"])
    assert Path(index["path"]).exists() and loaded["train_trade_ids"]  # recovered from staging on load
    assert project.materialize(*Q2).success  # the same range again, whole
    stored = project.table("run_metrics")
    assert sorted(stored["run_key"]) == [Q1_KEY, Q2_KEY]
    assert stored.set_index("run_key").loc[Q2_KEY, "priors_from_run_key"] == Q1_KEY
    assert project.table("trades")["trade_id"].is_unique


def test_readers_outside_the_run_see_no_staged_rows(embedded_runs: EmbeddedRuns, tmp_path, monkeypatch):
    project = copy_of(embedded_runs.one, tmp_path)
    monkeypatch.setenv(FAILPOINT_VARIABLE, "staged:feature_priors")
    with pytest.raises(InjectedFailure):
        project.materialize(*Q2)
    with duckdb.connect(str(project.warehouse_path), read_only=True) as con:
        staged = con.execute("SELECT count(*) FROM staging.run_metrics").fetchall()[0][0]
        public = con.execute("SELECT run_key FROM run_metrics").fetchall()
    assert staged == 1 and public == [(Q1_KEY,)]  # the failed run's rows wait in staging, unseen


@pytest.fixture
def small_disk(tmp_path):
    """An 80 MB tmpfs (needs root: CI runs as root and sets PERSISTENCE_REQUIRE_TMPFS, so there it
    fails rather than skips)."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        if os.environ.get("PERSISTENCE_REQUIRE_TMPFS"):
            pytest.fail(f"cannot mount a tmpfs: {mounted.stderr.decode()}")
        pytest.skip(f"cannot mount a tmpfs (not root?): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def free_bytes(folder: Path) -> int:
    status = os.statvfs(folder)
    return status.f_bavail * status.f_frsize


def test_a_run_that_fills_the_disk_leaves_every_table_and_file_as_it_was(
    embedded_runs: EmbeddedRuns, small_disk
):
    """The next quarter's run first on room enough, to measure the disk it takes; then with 2% and
    10% of that free, so that it runs out at different stages: while staging its rows in DuckDB, and
    while staging its dashboard files (DuckDB grows its file in blocks and reuses free ones, so a
    third of the measured growth can already be enough)."""
    measured = copy_of(embedded_runs.one, small_disk / "measured")
    free = free_bytes(small_disk)
    assert measured.materialize(*Q2).success
    needed = free - free_bytes(small_disk)
    shutil.rmtree(measured.root)
    failed_steps = set()
    for share in (0.02, 0.1):
        project = copy_of(embedded_runs.one, small_disk / f"share_{share}")
        (small_disk / "filler").write_bytes(b"\0" * int(free_bytes(small_disk) - share * needed))
        before = fingerprint(project)
        result = project.materialize(*Q2, raise_on_error=False)
        assert not result.success, share
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert "No space left on device" in str(failure.event_specific_data), share
        failed_steps.add(failure.step_key)
        assert fingerprint(project) == before, share
        shutil.rmtree(project.root)
        (small_disk / "filler").unlink()
    assert len(failed_steps) == 2  # out of room in the database (staging) and in the files (dashboard)
