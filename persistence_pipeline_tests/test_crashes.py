"""A run is whole or absent when its process dies: SIGKILL of the CLI at a stage, inside the
publishing commit and between the commit and the file move, and a disk that fills up. Every public
table and file is compared by content hash (`fingerprint`) before and after."""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from persistence_pipeline.resources import CheckpointStore
from persistence_pipeline.storage.database import FAILPOINT_VARIABLE
from persistence_pipeline_tests.conftest import Q2, EmbeddedRuns, copy_of
from persistence_pipeline_tests.test_process_safety import cli
from persistence_pipeline_tests.test_whole_or_absent import Q1_KEY, Q2_KEY, fingerprint

pytestmark = pytest.mark.e2e

HISTORY, Q2_MONTHS = "persistence_pipeline.history", ("2021-04-01", "2021-06-01")  # Q2's days, as months


def test_a_run_killed_at_a_stage_or_inside_its_publishing_commit_leaves_no_trace(
    embedded_runs: EmbeddedRuns, tmp_path
):
    """SIGKILL of the CLI process (`dagster asset materialize`) after a stage has staged its rows,
    and inside the transaction that publishes the run; then the same range runs whole. The killed
    runs are the second quarter's three months in the history code location: the run of the same
    days, staged and published by the same code, with a thirtieth of the daily partitions' Dagster
    bookkeeping before each kill."""
    project = copy_of(embedded_runs.one, tmp_path)
    before = fingerprint(project)
    for point in ["staged:profit_model:kill", "publish:kill"]:
        victim = cli(tmp_path, *Q2_MONTHS, extra_env={FAILPOINT_VARIABLE: point}, module=HISTORY)
        victim.communicate(timeout=900)
        assert victim.returncode == -signal.SIGKILL, point
        assert fingerprint(project) == before, point  # the file opens; the killed transaction is gone
    cut = cli(tmp_path, *Q2_MONTHS, extra_env={FAILPOINT_VARIABLE: "published:kill"}, module=HISTORY)
    cut.communicate(timeout=900)
    assert cut.returncode == -signal.SIGKILL
    index = project.table("checkpoints").set_index("run_key").loc[Q2_KEY]
    assert not Path(index["path"]).exists()  # published; killed before its checkpoint moved into place
    loaded = CheckpointStore(directory=str(tmp_path / "checkpoints")).load(index["path"], index["sha256"])
    assert Path(index["path"]).exists() and loaded.train_trade_ids  # recovered from staging on load
    assert project.materialize(*Q2).success  # the same range again, whole
    stored = project.table("run_metrics")
    assert sorted(stored["run_key"]) == [Q1_KEY, Q2_KEY]
    assert stored.set_index("run_key").loc[Q2_KEY, "priors_from_run_key"] == Q1_KEY
    assert project.table("trades")["trade_id"].is_unique


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
    """The next quarter's run first on room enough, to measure the disk it takes; then with none and
    3% of that free, so that it runs out at different stages: while staging its rows in DuckDB, and
    while staging its dashboard files (DuckDB grows its file in blocks and reuses free ones, so a
    small share of the measured growth can already be enough for every row)."""
    measured = copy_of(embedded_runs.one, small_disk / "measured")
    free = free_bytes(small_disk)
    assert measured.materialize(*Q2).success
    needed = free - free_bytes(small_disk)
    shutil.rmtree(measured.root)
    failed_steps = set()
    for share in (0.0, 0.03):
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
    # out of room in the database (staging) and in the files (dashboard)
    assert len(failed_steps) == 2, failed_steps
