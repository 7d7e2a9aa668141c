"""A corpus of malformed inputs (trade logs and OHLCV files). Each fails early with a message that
names the file, the column and the row, and leaves the warehouse file and the checkpoint files
byte-identical. The table of messages in docs/how-to/bring-your-own.md is this corpus."""

from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from persistence_pipeline.assets.trades import trades
from persistence_pipeline.core.strategies import generate_trades
from persistence_pipeline.resources import ModelSettings, TradeSource
from persistence_pipeline.source_files import load_embedded_bars
from persistence_pipeline_tests.conftest import Project, check_evaluation

START, END = "2021-01-04", "2021-03-31"


def good_log() -> pd.DataFrame:
    trades = generate_trades(load_embedded_bars())
    window = trades[(trades["entry_time"] >= START) & (trades["entry_time"] < "2021-04-01")]
    log = window.drop(columns="return").reset_index(drop=True)
    log["entry_time"] = log["entry_time"].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    log["exit_time"] = log["exit_time"].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    return log


def good_bars() -> pd.DataFrame:
    bars = load_embedded_bars()
    bars = (
        bars[(bars["symbol"] == "AAPL") & (bars["date"] < "2021-07-01")]
        .drop(columns="symbol")
        .reset_index(drop=True)
    )
    return bars.assign(date=bars["date"].dt.strftime("%Y-%m-%d"))


def _bar_row(bars: pd.DataFrame, date: str) -> int:
    """The 1-based data row of a date in a bar file written from `bars`."""
    return int(np.flatnonzero(bars["date"] == date)[0]) + 1


def _unadjusted_split(bars: pd.DataFrame, date: str, factor: float) -> pd.DataFrame:
    """The bars as an unadjusted source shows them: prices before a `factor`:1 split are `factor` times
    higher."""
    before = bars["date"] < date
    prices = {c: bars[c].where(~before, bars[c] * factor) for c in ["open", "high", "low", "close"]}
    return bars.assign(**prices)


def _without(bars: pd.DataFrame, first: str, last: str) -> pd.DataFrame:
    return bars[(bars["date"] < first) | (bars["date"] > last)].reset_index(drop=True)


def _timestamps(log: pd.DataFrame, layout: str, rows: slice | None = None) -> pd.DataFrame:
    """The log with its timestamps written in `layout` (strftime), in `rows` only when given."""
    log = log.copy()
    for column in ["entry_time", "exit_time"]:
        written = pd.to_datetime(log[column], utc=True).dt.strftime(layout)
        log[column] = written if rows is None else written.where(log.index.isin(log.index[rows]), log[column])
    return log


def _days_up_to_12(log: pd.DataFrame) -> pd.DataFrame:
    """Trades entered and exited on days 1-12 of a month: day-first dates of these read either way."""
    entry, exit_ = pd.to_datetime(log["entry_time"], utc=True), pd.to_datetime(log["exit_time"], utc=True)
    return log[(entry.dt.day <= 12) & (exit_.dt.day <= 12)].reset_index(drop=True)


def snapshot(project: Project) -> dict[str, bytes]:
    files = [project.warehouse_path, *project.checkpoint_dir.rglob("*")]
    return {str(p.relative_to(project.root)): p.read_bytes() for p in files if p.is_file()}


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Project, dict, pd.DataFrame]:
    root = tmp_path_factory.mktemp("stored")
    log = good_log()
    (root / "good").mkdir()
    log.to_csv(root / "good" / "trades.csv", index=False)
    project = Project(root, TradeSource(kind="trade_log_dir", path=str(root / "good")), ModelSettings())
    project.materialize(START, END)
    return project, snapshot(project), log


def _set(frame, row, column, value):
    frame = frame.astype({column: object})
    frame.loc[row - 1, column] = value
    return frame


def _log(folder: Path, frame: pd.DataFrame, name: str = "trades.csv") -> None:
    frame.to_csv(folder / name, index=False) if name.endswith(".csv") else frame.to_parquet(folder / name)


def _logs(folder: Path, *files: tuple[pd.DataFrame, str]) -> None:
    """Several trade log files in one folder: (frame, file name) each."""
    for frame, name in files:
        _log(folder, frame, name)


def _truncated_parquet(folder: Path, log: pd.DataFrame) -> None:
    _log(folder, log, "trades.parquet")
    data = (folder / "trades.parquet").read_bytes()
    (folder / "trades.parquet").write_bytes(data[: len(data) // 2])


def _wide(log: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    extra = pd.DataFrame(rng.normal(size=(len(log), 400)), columns=[f"extra_{i}" for i in range(400)])
    return pd.concat([log, extra], axis=1)


# name: (write the bad input into a folder, named file (None: the folder), column, row, message[, more
# settings of the trade source])
Case = tuple[Any, ...]
TRADE_LOG_CASES: dict[str, Case] = {
    "missing column": (
        lambda d, log: _log(d, log.drop(columns="exit_price")),
        "trades.csv",
        "exit_price",
        None,
        "required column is missing",
    ),
    "misnamed column": (
        lambda d, log: _log(d, log.rename(columns={"entry_time": "entry"})),
        "trades.csv",
        "entry_time",
        None,
        "required column is missing",
    ),
    "non-numeric price": (
        lambda d, log: _log(d, _set(log, 3, "entry_price", "abc")),
        "trades.csv",
        "entry_price",
        3,
        "'abc' is not a number",
    ),
    "NaN price": (
        lambda d, log: _log(d, _set(log, 4, "exit_price", np.nan)),
        "trades.csv",
        "exit_price",
        4,
        "is missing or infinite",
    ),
    "NaN feature": (
        lambda d, log: _log(d, _set(log, 5, "rsi_14", np.nan)),
        "trades.csv",
        "rsi_14",
        5,
        "is missing or infinite",
    ),
    "inf feature": (
        lambda d, log: _log(d, _set(log, 7, "gap", np.inf)),
        "trades.csv",
        "gap",
        7,
        "is missing or infinite",
    ),
    "text in a feature": (
        lambda d, log: _log(d, _set(log, 9, "zscore_20", "high")),
        "trades.csv",
        "zscore_20",
        9,
        "'high' is not a number",
    ),
    "duplicate trade_id": (
        lambda d, log: _log(d, _set(log, 4, "trade_id", log.loc[1, "trade_id"])),
        "trades.csv",
        "trade_id",
        4,
        "duplicate trade_id",
    ),
    "missing trade_id": (
        lambda d, log: _log(d, _set(log, 6, "trade_id", np.nan)),
        "trades.csv",
        "trade_id",
        6,
        "trade_id is missing",
    ),
    "exit before entry": (
        lambda d, log: _log(d, _set(log, 6, "exit_time", "2020-01-01T00:00:00+0000")),
        "trades.csv",
        "exit_time",
        6,
        "is before entry",
    ),
    "zero price": (
        lambda d, log: _log(d, _set(log, 2, "exit_price", 0.0)),
        "trades.csv",
        "exit_price",
        2,
        "price 0.0 is not positive",
    ),
    "negative price": (
        lambda d, log: _log(d, _set(log, 8, "entry_price", -3.5)),
        "trades.csv",
        "entry_price",
        8,
        "price -3.5 is not positive",
    ),
    "unknown side": (
        lambda d, log: _log(d, _set(log, 8, "side", "flat")),
        "trades.csv",
        "side",
        8,
        "unknown side 'flat'",
    ),
    "fractional side": (
        lambda d, log: _log(d, _set(log, 10, "side", 2.5)),
        "trades.csv",
        "side",
        10,
        "unknown side 2.5",
    ),
    "unparseable timestamp": (
        lambda d, log: _log(d, _set(log, 9, "entry_time", "next tuesday")),
        "trades.csv",
        "entry_time",
        9,
        "cannot parse timestamp",
    ),
    "timestamp out of range": (
        lambda d, log: _log(d, _set(log, 11, "exit_time", "2150-01-01T00:00:00+0000")),
        "trades.csv",
        "exit_time",
        11,
        "is out of range",
    ),
    "empty file": (
        lambda d, log: (d / "trades.csv").write_text(""),
        "trades.csv",
        None,
        None,
        "the file is empty",
    ),
    "header only": (lambda d, log: _log(d, log.iloc[0:0]), "trades.csv", None, None, "the file has no rows"),
    "truncated parquet": (_truncated_parquet, "trades.parquet", None, None, "cannot be read"),
    "single trade": (
        lambda d, log: _log(d, log.iloc[:1]),
        None,
        "exit_time",
        None,
        "only 1 of the 1 trades entered in the range exit by 2021-03-31",
    ),
    "constant feature": (
        lambda d, log: _log(d, log.assign(rsi_14=50.0)),
        "trades.csv",
        "rsi_14",
        None,
        "has the same value (50.0) in every row",
    ),
    "labels all equal": (
        lambda d, log: _log(d, log.assign(exit_price=log["entry_price"])),
        "trades.csv",
        "exit_price",
        None,
        "every trade has the same return (0.0)",
    ),
    "missing symbol": (
        lambda d, log: _log(d, _set(log, 12, "symbol", np.nan)),
        "trades.csv",
        "symbol",
        12,
        "symbol is missing",
    ),
    "column names differing by case": (
        lambda d, log: _log(d, log.assign(RSI_14=log["rsi_14"] * 2)),
        "trades.csv",
        "RSI_14",
        None,
        "differs from column 'rsi_14' only by letter case",
    ),
    "more features than trades can carry": (
        lambda d, log: _log(d, _wide(log), "trades.parquet"),
        None,
        "exit_time",
        None,
        "5 per feature for 419 features",
    ),
    "empty range": (
        lambda d, log: _log(
            d, log.assign(entry_time="2019-01-02T14:30:00+0000", exit_time="2019-01-03T21:00:00+0000")
        ),
        None,
        "entry_time",
        None,
        "no trades entered between 2021-01-04 and 2021-03-31",
    ),
    "trade_id in two files": (
        lambda d, log: _logs(d, (log.iloc[:200], "a.csv"), (log.iloc[199:], "b.csv")),
        "b.csv",
        "trade_id",
        1,
        "is also in",
    ),
    "feature columns differ between files": (
        lambda d, log: _logs(
            d,
            (log.iloc[:200], "a.csv"),
            (log.iloc[200:].drop(columns="gap"), "b.csv"),
        ),
        "b.csv",
        "gap",
        None,
        "feature columns differ from the first file",
    ),
    "no data files": (
        lambda d, log: (d / "notes.txt").write_text("hello"),
        None,
        None,
        None,
        "no .csv or .parquet files in the directory",
    ),
    "day-first dates, every day <= 12": (
        lambda d, log: _log(d, _timestamps(_days_up_to_12(log), "%d/%m/%Y")),
        "trades.csv",
        "entry_time",
        1,
        "'04/01/2021' is not an ISO 8601 timestamp (YYYY-MM-DD[THH:MM[:SS]][zone]); set "
        "trade_source.timestamp_format ('%d/%m/%Y' if the day comes first, '%m/%d/%Y' if the month does: "
        "the column fits both) for other formats",
    ),
    "a day-first date among ISO timestamps": (
        lambda d, log: _log(d, _set(log, 3, "entry_time", "13/01/2021 14:30")),
        "trades.csv",
        "entry_time",
        3,
        "'13/01/2021 14:30' is not an ISO 8601 timestamp (YYYY-MM-DD[THH:MM[:SS]][zone]); set "
        "trade_source.timestamp_format (e.g. '%d/%m/%Y %H:%M') for other formats",
    ),
    "timestamp not in timestamp_format": (
        lambda d, log: _log(d, _timestamps(log, "%d/%m/%Y %H:%M", slice(0, 4))),
        "trades.csv",
        "entry_time",
        5,
        "'2021-01-05T14:30:00+0000' does not match trade_source.timestamp_format '%d/%m/%Y %H:%M'",
        {"timestamp_format": "%d/%m/%Y %H:%M"},
    ),
    "several required columns missing": (
        lambda d, log: _log(d, log.drop(columns=["entry_price", "exit_price"])),
        "trades.csv",
        None,
        None,
        "required columns are missing: entry_price, exit_price (columns found: [",
    ),
}
OHLCV_CASES: dict[str, Case] = {
    "bars: missing volume": (
        lambda d, bars: _log(d, bars.drop(columns="volume"), "AAPL.csv"),
        "AAPL.csv",
        "volume",
        None,
        "required column is missing",
    ),
    "bars: negative low": (
        lambda d, bars: _log(d, _set(bars, 12, "low", -1.0), "AAPL.csv"),
        "AAPL.csv",
        "low",
        12,
        "price -1.0 is not positive",
    ),
    "bars: high below low": (
        lambda d, bars: _log(d, _set(bars, 20, "high", bars.loc[19, "low"] * 0.5), "AAPL.csv"),
        "AAPL.csv",
        "high",
        20,
        "high/low do not bracket",
    ),
    "bars: duplicate day": (
        lambda d, bars: _log(d, pd.concat([bars, bars.iloc[[5]]], ignore_index=True), "AAPL.csv"),
        "AAPL.csv",
        "date",
        len(good_bars()) + 1,
        "second bar for the same symbol and date",
    ),
    "bars: unparseable date": (
        lambda d, bars: _log(d, _set(bars, 30, "date", "31/02/2021x"), "AAPL.csv"),
        "AAPL.csv",
        "date",
        30,
        "cannot parse timestamp",
    ),
    "bars: negative volume": (
        lambda d, bars: _log(d, _set(bars, 40, "volume", -100), "AAPL.csv"),
        "AAPL.csv",
        "volume",
        40,
        "volume is negative",
    ),
    "bars: empty file": (
        lambda d, bars: (d / "AAPL.csv").write_text(""),
        "AAPL.csv",
        None,
        None,
        "the file is empty",
    ),
    "bars: day-first dates": (
        lambda d, bars: _log(
            d, bars.assign(date=pd.to_datetime(bars["date"]).dt.strftime("%d/%m/%Y")), "AAPL.csv"
        ),
        "AAPL.csv",
        "date",
        1,
        "'02/01/2013' is not an ISO 8601 timestamp (YYYY-MM-DD[THH:MM[:SS]][zone]); set "
        "trade_source.timestamp_format (e.g. '%d/%m/%Y') for other formats",
    ),
    "bars: close only": (
        lambda d, bars: _log(d, bars[["date", "close"]], "AAPL.csv"),
        "AAPL.csv",
        None,
        None,
        "required columns are missing: open, high, low, volume (columns found: ['symbol', 'date', 'close']); "
        "the built-in strategies enter at the next open and use high/low/volume: supply OHLCV bars, "
        "or bring trade logs",
    ),
    "bars: no intraday range (open = high = low = close)": (
        lambda d, bars: _log(
            d, bars.assign(open=bars["close"], high=bars["close"], low=bars["close"]), "AAPL.csv"
        ),
        "AAPL.csv",
        "open",
        None,
        "AAPL has open = high = low = close in every bar: the bars carry no intraday range",
    ),
    "bars: constant volume": (
        lambda d, bars: _log(d, bars.assign(volume=1_000_000), "AAPL.csv"),
        "AAPL.csv",
        "volume_ratio_20",
        None,
        "has the same value (1.0) in every trade made from the bars: it carries no information",
    ),
    "bars: unadjusted 4:1 split": (
        lambda d, bars: _log(d, _unadjusted_split(bars, "2020-08-31", 4.0), "AAPL.csv"),
        "AAPL.csv",
        "open",
        _bar_row(good_bars(), "2020-08-31"),
        "AAPL 2020-08-31 opens at 0.26x the previous close, like an unadjusted 4:1 split: "
        "use split-adjusted bars",
    ),
    "bars: ten missing trading days": (
        lambda d, bars: _log(d, _without(bars, "2020-03-02", "2020-03-13"), "AAPL.csv"),
        "AAPL.csv",
        "date",
        _bar_row(_without(good_bars(), "2020-03-02", "2020-03-13"), "2020-03-16"),
        "AAPL has no bars between 2020-02-28 and 2020-03-16 (17 calendar days apart, more than "
        "max_gap_days = 7): supply the missing bars, or raise trade_source.max_gap_days",
    ),
}


def _run_case(
    stored, tmp_path, kind, write, data, named, column, row, problem, settings=None, whole_run=False
):
    """The `trades` stage alone (the asset layer, invoked directly) or, with `whole_run`, every asset
    of the code location as one range run: refused with the file, column and row, nothing written.
    `settings`: more fields of the trade source (e.g. its timestamp_format)."""
    project, before, _ = stored
    folder = tmp_path / "input"
    folder.mkdir()
    write(folder, data)
    source = TradeSource(kind=kind, path=str(folder), **(settings or {}))
    failing = Project(project.root, source, ModelSettings())
    with pytest.raises(dg.Failure) as error:  # the step fails with the message as its description
        failing.materialize(START, END) if whole_run else failing.invoke(trades, START, END)
    message = str(error.value.description)
    assert message.startswith(
        f"file {folder / named}" if named else f"file {kind} {folder}" if column else f"file {folder}"
    ), message
    assert (f"column {column!r}" in message) if column else ("column" not in message.split(":")[0]), message
    assert (f"row {row}:" in message) if row else (", row " not in message), message
    assert problem in message, message
    assert snapshot(project) == before  # byte-identical warehouse and checkpoints
    return message


@pytest.mark.assets
@pytest.mark.parametrize("case", list(TRADE_LOG_CASES))
def test_bad_trade_log_is_refused_and_nothing_changes(stored, tmp_path, case):
    write, *expected = TRADE_LOG_CASES[case]
    _run_case(stored, tmp_path, "trade_log_dir", write, stored[2].copy(), *expected)


@pytest.mark.assets
@pytest.mark.parametrize("case", list(OHLCV_CASES))
def test_bad_bar_file_is_refused_and_nothing_changes(stored, tmp_path, case):
    write, *expected = OHLCV_CASES[case]
    _run_case(stored, tmp_path, "ohlcv_dir", write, good_bars(), *expected)


@pytest.mark.e2e
@pytest.mark.parametrize("case", ["text in a feature", "feature columns differ between files"])
def test_a_bad_trade_log_fails_the_whole_run_and_nothing_changes(stored, tmp_path, case):
    write, named, column, row, problem = TRADE_LOG_CASES[case][:5]
    data = stored[2].copy()
    _run_case(stored, tmp_path, "trade_log_dir", write, data, named, column, row, problem, whole_run=True)


@pytest.mark.assets
def test_the_corpus_is_large_enough():
    assert len(TRADE_LOG_CASES) + len(OHLCV_CASES) >= 25


@pytest.mark.assets
def test_outcome_column_configured_as_feature_is_refused(stored, tmp_path):
    project, before, log = stored
    (tmp_path / "log").mkdir()
    log.assign(pnl=np.arange(len(log))).to_csv(tmp_path / "log" / "trades.csv", index=False)
    failing = Project(
        project.root,
        TradeSource(kind="trade_log_dir", path=str(tmp_path / "log"), features=["rsi_14", "pnl"]),
        ModelSettings(),
    )
    with pytest.raises(
        dg.Failure, match=r"trades.csv, column 'pnl': is an outcome column .* can never be a feature"
    ):
        failing.invoke(trades, START, END)
    assert snapshot(project) == before


@pytest.mark.assets
def test_zoned_timestamps_are_converted_to_utc(stored, tmp_path):
    project, _, log = stored
    zoned = log.copy()
    for column in ["entry_time", "exit_time"]:
        zoned[column] = (
            pd.to_datetime(log[column], utc=True)
            .dt.tz_convert("Asia/Tokyo")
            .dt.strftime("%Y-%m-%dT%H:%M:%S%z")
        )
    (tmp_path / "log").mkdir()
    zoned.to_csv(tmp_path / "log" / "trades.csv", index=False)
    fresh = Project(tmp_path, TradeSource(kind="trade_log_dir", path=str(tmp_path / "log")), ModelSettings())
    fresh.invoke(trades, START, END)
    pd.testing.assert_frame_equal(
        fresh.table("trades", order_by="trade_id"), project.table("trades", order_by="trade_id")
    )


@pytest.mark.assets
def test_outcome_columns_are_never_picked_as_features(stored, tmp_path):
    _, _, log = stored
    (tmp_path / "log").mkdir()
    log.assign(
        pnl=np.arange(len(log)),
        holding_period=3.0 + np.arange(len(log)),
        exit_reason_code=1.0 + np.arange(len(log)),
    ).to_csv(tmp_path / "log" / "trades.csv", index=False)
    fresh = Project(tmp_path, TradeSource(kind="trade_log_dir", path=str(tmp_path / "log")), ModelSettings())
    fresh.invoke(trades, START, END)
    columns = set(fresh.table("trades").columns)
    assert not {"pnl", "holding_period", "exit_reason_code"} & columns and "rsi_14" in columns


@pytest.mark.assets
def test_trade_log_run_stores_the_log(stored):
    project, _, log = stored
    trades = project.table("trades")
    assert len(trades) == len(log)
    assert sorted(trades["trade_id"]) == sorted(log["trade_id"])
    merged = trades.merge(log, on="trade_id", suffixes=("", "_log"))
    np.testing.assert_allclose(merged["rsi_14"], merged["rsi_14_log"])
    np.testing.assert_allclose(
        merged["return"], merged["side"] * (merged["exit_price"] / merged["entry_price"] - 1)
    )
    assert len(project.table("run_metrics")) == 1


@pytest.mark.e2e
def test_a_trade_with_an_implausible_return_is_flagged(stored, tmp_path):
    _, _, log = stored
    implausible = log.copy()
    implausible.loc[3, "exit_price"] = implausible.loc[3, "entry_price"] * (
        0.46 if implausible.loc[3, "side"] == 1 else 1.54
    )  # -54%: as an unadjusted 2:1 split gives
    (tmp_path / "log").mkdir()
    implausible.to_csv(tmp_path / "log" / "trades.csv", index=False)
    fresh = Project(tmp_path, TradeSource(kind="trade_log_dir", path=str(tmp_path / "log")), ModelSettings())
    others = ("profit_model", "feature_importance", "feature_stability", "stability_summary")
    result = fresh.materialize(
        START, END, without=(*others, "feature_alpha", "feature_priors", "persistence_dashboard")
    )
    evaluation = check_evaluation(result, "trades_have_plausible_returns")
    assert not evaluation.passed
    assert (
        evaluation.description
        == f"1 trade(s) with |return| > 50%, e.g. {implausible.loc[3, 'trade_id']} (-54.0%)"
    )
