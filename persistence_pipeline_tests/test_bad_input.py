"""Bad trade logs fail early with a message that names the file, the column and the row, and
leave everything already stored (tables and checkpoint files) exactly as it was."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persistence_pipeline.core.market_data import load_embedded_bars
from persistence_pipeline.core.schema import InputDataError
from persistence_pipeline.core.strategies import generate_trades
from persistence_pipeline.resources import TradeSource
from persistence_pipeline_tests.conftest import Project
from persistence_pipeline.resources import ModelSettings

TABLES = ["trades", "run_metrics", "checkpoints", "feature_importance_history"]
START, END = "2021-01-04", "2021-03-31"


def good_log() -> pd.DataFrame:
    trades = generate_trades(load_embedded_bars())
    window = trades[(trades["entry_time"] >= START) & (trades["entry_time"] < "2021-04-01")]
    log = window.drop(columns="return").reset_index(drop=True)
    log["entry_time"] = log["entry_time"].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    log["exit_time"] = log["exit_time"].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    return log


def snapshot(project: Project) -> dict:
    tables = {name: project.table(name) for name in TABLES}
    files = {p.relative_to(project.root): p.read_bytes() for p in project.checkpoint_dir.rglob("*") if p.is_file()}
    return {"tables": tables, "files": files}


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Project, dict, pd.DataFrame]:
    root = tmp_path_factory.mktemp("stored")
    log = good_log()
    (root / "good").mkdir()
    log.to_csv(root / "good" / "trades.csv", index=False)
    project = Project(root, TradeSource(kind="trade_log_dir", path=str(root / "good")), ModelSettings())
    project.materialize(START, END)
    return project, snapshot(project), log


def _set(log, row, column, value):
    log = log.astype({column: object}) if column in log.columns else log
    log.loc[row - 1, column] = value
    return log


CASES = {
    "missing column": (lambda log: log.drop(columns="exit_price"), "exit_price", None, "required column is missing"),
    "non-numeric price": (lambda log: _set(log, 3, "entry_price", "abc"), "entry_price", 3, "'abc' is not a number"),
    "NaN feature": (lambda log: _set(log, 5, "rsi_14", np.nan), "rsi_14", 5, "is missing or infinite"),
    "inf feature": (lambda log: _set(log, 7, "gap", np.inf), "gap", 7, "is missing or infinite"),
    "duplicate trade_id": (lambda log: _set(log, 4, "trade_id", log.loc[1, "trade_id"]), "trade_id", 4, "duplicate trade_id"),
    "exit before entry": (lambda log: _set(log, 6, "exit_time", "2020-01-01T00:00:00+0000"), "exit_time", 6, "is before entry"),
    "non-positive price": (lambda log: _set(log, 2, "exit_price", 0.0), "exit_price", 2, "price 0.0 is not positive"),
    "unknown side": (lambda log: _set(log, 8, "side", "flat"), "side", 8, "unknown side 'flat'"),
    "unparseable timestamp": (lambda log: _set(log, 9, "entry_time", "next tuesday"), "entry_time", 9, "cannot parse timestamp"),
    "empty range": (
        lambda log: log.assign(entry_time="2019-01-02T14:30:00+0000", exit_time="2019-01-03T21:00:00+0000"),
        "entry_time", None, "no trades entered between 2021-01-04 and 2021-03-31",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_trade_log_is_refused_and_nothing_changes(stored, tmp_path, case):
    project, before, log = stored
    corrupt, column, row, problem = CASES[case]
    corrupt(log.copy()).to_csv(tmp_path / "trades.csv", index=False)
    failing = Project(project.root, TradeSource(kind="trade_log_dir", path=str(tmp_path)), ModelSettings())
    with pytest.raises(InputDataError) as error:
        failing.materialize(START, END)
    message = str(error.value)
    named = f"file trade_log_dir {tmp_path}" if case == "empty range" else f"file {tmp_path / 'trades.csv'}"
    assert message.startswith(named)
    assert f"column {column!r}" in message
    assert (f"row {row}:" in message) if row else ("row" not in message)
    assert problem in message
    after = snapshot(project)
    for name in TABLES:
        pd.testing.assert_frame_equal(after["tables"][name], before["tables"][name])
    assert after["files"] == before["files"]


def test_outcome_column_as_feature_is_refused(stored, tmp_path):
    project, before, log = stored
    log.assign(pnl=1.0).to_csv(tmp_path / "trades.csv", index=False)
    failing = Project(project.root, TradeSource(kind="trade_log_dir", path=str(tmp_path), features=["rsi_14", "pnl"]), ModelSettings())
    with pytest.raises(InputDataError, match=r"column 'pnl': is an outcome column .* can never be a feature"):
        failing.materialize(START, END)
    pd.testing.assert_frame_equal(project.table("trades"), before["tables"]["trades"])


def test_outcome_columns_are_never_picked_as_features(stored, tmp_path):
    project, _, log = stored
    log.assign(pnl=1.0, holding_period=3.0).to_csv(tmp_path / "trades.csv", index=False)
    fresh = Project(tmp_path, TradeSource(kind="trade_log_dir", path=str(tmp_path)), ModelSettings())
    fresh.materialize(START, END)
    columns = set(fresh.table("trades").columns)
    assert "pnl" not in columns and "holding_period" not in columns
    assert "rsi_14" in columns


def test_empty_file_is_refused(stored, tmp_path):
    project, _, _ = stored
    (tmp_path / "trades.csv").write_text("")
    failing = Project(project.root, TradeSource(kind="trade_log_dir", path=str(tmp_path)), ModelSettings())
    with pytest.raises(InputDataError, match=r"file .*trades.csv: the file is empty"):
        failing.materialize(START, END)


def test_trade_log_run_stores_the_log(stored):
    project, before, log = stored
    trades = before["tables"]["trades"]
    assert len(trades) == len(log)
    assert sorted(trades["trade_id"]) == sorted(log["trade_id"])
    merged = trades.merge(log, on="trade_id", suffixes=("", "_log"))
    np.testing.assert_allclose(merged["rsi_14"], merged["rsi_14_log"])
    np.testing.assert_allclose(merged["return"], merged["side"] * (merged["exit_price"] / merged["entry_price"] - 1))
    assert len(before["tables"]["run_metrics"]) == 1
