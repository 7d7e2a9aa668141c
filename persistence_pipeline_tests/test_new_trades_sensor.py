"""The new-trades sensor on a real trade-log directory and a real warehouse: a file dropped in asks for
ONE run over the window ending on its newest new trade, each file is handled once (the cursor), and
every evaluation that asks for nothing says why."""

import os

import dagster as dg
import pandas as pd
import pytest

from persistence_pipeline.core.trade_sources import new_or_changed_trades
from persistence_pipeline.resources import RetrainSettings, TradeSource, Warehouse
from persistence_pipeline.sensors import new_trades_sensor
from persistence_pipeline.storage.database import Database
from persistence_pipeline.storage.trade_store import replace_trades, stored_trade_versions
from persistence_pipeline_tests.test_planted_signal import planted_trade_log

pytestmark = pytest.mark.assets


def evaluate(folder, warehouse, cursor: str | None, kind: str = "trade_log_dir"):
    """One evaluation: its result and the cursor it leaves."""
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={
            "trade_source": TradeSource(kind=kind, path=str(folder)),
            "warehouse": Warehouse(path=str(warehouse)),
            "retrain_settings": RetrainSettings(window_days=90),
        },
    )
    return new_trades_sensor(context), context.cursor


def test_a_dropped_file_asks_for_one_run_over_the_window_of_its_new_trades(tmp_path):
    log, folder, warehouse = planted_trade_log(per_day=2), tmp_path / "log", tmp_path / "warehouse.duckdb"
    folder.mkdir()
    entry = pd.to_datetime(log["entry_time"], utc=True)
    log[entry < "2021-04-01"].to_parquet(folder / "2021q1.parquet")

    first, cursor = evaluate(folder, warehouse, None)
    assert isinstance(first, dg.RunRequest)
    assert first.tags == {  # the 90 days ending on the last trade of the file (2021-03-31)
        "dagster/asset_partition_range_start": "2021-01-01",
        "dagster/asset_partition_range_end": "2021-03-31",
    }
    again, same_cursor = evaluate(folder, warehouse, cursor)
    assert isinstance(again, dg.SkipReason) and same_cursor == cursor
    assert again.skip_message == f"no file added or changed in {folder} (1 files handled)"

    log[(entry >= "2021-04-01") & (entry < "2021-05-01")].to_csv(folder / "2021-04.csv", index=False)
    second, cursor = evaluate(folder, warehouse, cursor)
    assert isinstance(second, dg.RunRequest) and second.run_key != first.run_key
    assert second.tags == {
        "dagster/asset_partition_range_start": "2021-01-31",
        "dagster/asset_partition_range_end": "2021-04-30",
    }

    # every trade stored as it is: a rewritten file asks for nothing, and says so
    trades = TradeSource(kind="trade_log_dir", path=str(folder)).load()
    db = Database(str(warehouse))
    replace_trades(
        db,
        trades,
        pd.Timestamp("2021-01-01", tz="UTC"),
        pd.Timestamp("2021-05-01", tz="UTC"),
        "log",
        len(trades),
    )
    (folder / "2021q1.parquet").write_bytes((folder / "2021q1.parquet").read_bytes())
    os.utime(folder / "2021q1.parquet", ns=(1, 1))
    stored, cursor = evaluate(folder, warehouse, cursor)
    assert isinstance(stored, dg.SkipReason)
    assert (
        stored.skip_message == "2021q1.parquet added or changed, but the warehouse holds every trade as it is"
    )

    # a file whose rows are bad: the skip names the file, the column and the row
    bad = log[entry >= "2021-05-01"].head(3).copy()
    bad.loc[bad.index[1], "entry_price"] = -1.0
    bad.to_csv(folder / "2021-05.csv", index=False)
    refused, cursor = evaluate(folder, warehouse, cursor)
    assert isinstance(refused, dg.SkipReason)
    assert refused.skip_message == (
        f"2021-05.csv added or changed, but the source cannot be read: file {folder / '2021-05.csv'}, "
        "column 'entry_price', row 2: price -1.0 is not positive"
    )


def test_the_embedded_data_and_a_missing_folder_are_not_watched(tmp_path):
    embedded, _ = evaluate(tmp_path, tmp_path / "w.duckdb", None, kind="embedded")
    assert isinstance(embedded, dg.SkipReason) and "embedded data, which does not change" in str(
        embedded.skip_message
    )
    missing, cursor = evaluate(tmp_path / "nowhere", tmp_path / "w.duckdb", None)
    assert isinstance(missing, dg.SkipReason) and cursor is None
    assert missing.skip_message == f"nothing to watch: file {tmp_path / 'nowhere'}: directory does not exist"


def test_new_or_changed_trades_by_hand():
    stored = pd.DataFrame(
        {
            "trade_id": ["a", "b", "c"],
            "entry_time": pd.to_datetime(["2021-01-04", "2021-01-05", "2021-01-06"], utc=True),
            "exit_time": pd.to_datetime(["2021-01-05", "2021-01-06", "2021-01-07"], utc=True),
            "side": [1, -1, 1],
            "return": [0.01, -0.02, 0.03],
        }
    )
    source = stored.copy()
    source.loc[1, "return"] = -0.025  # changed
    source.loc[3] = ["d", *pd.to_datetime(["2021-01-07", "2021-01-08"], utc=True), 1, 0.0]  # new
    assert new_or_changed_trades(source, stored)["trade_id"].tolist() == ["b", "d"]
    assert new_or_changed_trades(stored, stored).empty
    assert new_or_changed_trades(source, stored_trade_versions(Database("/nonexistent/w.duckdb")))[
        "trade_id"
    ].tolist() == ["a", "b", "c", "d"]
