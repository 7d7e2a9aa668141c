"""`python -m persistence_pipeline run FIRST...LAST`: a range run whose console ends with its answer,
and whose failure's own message is the last thing printed (run_command.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

from persistence_pipeline.__main__ import main
from persistence_pipeline.run_command import summary_lines
from persistence_pipeline_tests.conftest import EmbeddedRuns, dagster_home, project_env

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["2021-03-31...2021-01-04"],
            "error: the partition range 2021-03-31...2021-01-04 is reversed: the first date comes first "
            "(--partition-range 2021-01-04...2021-03-31)",
        ),
        (
            ["2012-06-01...2012-09-30"],
            "error: the range starts on 2012-06-01, before the first partition: the partitions run from "
            "2013-01-02 to 2023-09-21; PERSISTENCE_PARTITIONS_START and PERSISTENCE_PARTITIONS_END "
            "(YYYY-MM-DD) move them",
        ),
        (
            ["2021-01-04...2021-03-31", "--select", "trades,profit_modle"],
            "error: no asset is named 'profit_modle'; did you mean profit_model?",
        ),
        (["2021-01-04..2021-03-31"], "error: the range '2021-01-04..2021-03-31' is not FIRST...LAST"),
    ],
)
def test_a_run_that_cannot_start_says_why_in_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["run", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(message) and err.count("\n") == 1


def test_the_summary_of_a_run_is_short_and_says_what_it_rests_on(embedded_runs: EmbeddedRuns):
    lines = summary_lines(embedded_runs.one.warehouse_path, "2021-01-04..2021-03-31/ridge")
    run = embedded_runs.one.table("run_metrics").iloc[0]
    assert lines[0] == "run 2021-01-04..2021-03-31/ridge"
    assert lines[1] == (
        f"  OOS rank IC {run['oos_rank_ic']:+.4f} on {run['n_oos']} trades in {run['n_folds']} fold"
        f"{'s' if run['n_folds'] != 1 else ''} [only {run['n_oos']} OOS trades; {run['n_folds']} of 5 folds]"
    )
    assert lines[2] == "  alpha: no feature has reliable alpha yet (none with q < 0.05)"
    assert lines[-1] == "  more: python -m persistence_pipeline report" and len(lines) <= 8


def test_bad_input_fails_the_run_with_the_message_last(tmp_path: Path):
    """A trade log with a text in a feature column: the run fails, and the last line printed is the
    project's message naming the file, the column and the row (not a Dagster stack trace)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "trades.csv").write_text(
        "trade_id,symbol,entry_time,exit_time,entry_price,exit_price,side,signal\n"
        "t1,AAA,2021-01-05T14:30:00Z,2021-01-06T14:30:00Z,100,101,1,0.5\n"
        "t2,AAA,2021-01-06T14:30:00Z,2021-01-07T14:30:00Z,100,99,-1,high\n"
    )
    env = {
        **project_env(tmp_path, dagster_home(tmp_path)),
        "PERSISTENCE_TRADE_SOURCE": "trade_log_dir",
        "PERSISTENCE_TRADE_PATH": str(logs),
    }
    finished = subprocess.run(
        [sys.executable, "-m", "persistence_pipeline", "run", "2021-01-04...2021-01-31"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert finished.returncode == 1
    assert finished.stdout.startswith("running 2021-01-04...2021-01-31 (assets: *); the full Dagster log: ")
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"error: the run failed. trades: file {logs / 'trades.csv'}, column 'signal', row 2: "
        "value 'high' is not a number"
    ), last
    assert len(finished.stderr.strip().splitlines()) == 1
