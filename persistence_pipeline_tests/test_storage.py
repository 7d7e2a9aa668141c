"""The storage layer on real DuckDB files: the schema is migrated once per process and file, every
table of the contract round-trips through its typed write and read, writes are transactions, and
files are written atomically."""

import datetime as dt
import os
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest

from persistence_pipeline.errors import InputDataError, MissingRowsError
from persistence_pipeline.storage import contract, cross_run, explanations, files, publish, run_lock, runs
from persistence_pipeline.storage.database import Database, replace_run_rows
from persistence_pipeline.storage.latest_run import WarehouseUnreadable, latest_run
from persistence_pipeline.storage.trade_store import (
    replace_trades,
    source_trade_count,
    trades_between,
    trades_entered_before,
)

pytestmark = pytest.mark.storage

RUN = "2021-01-04..2021-03-31/ridge"
START, END = pd.Timestamp("2021-01-04", tz="UTC"), pd.Timestamp("2021-04-01", tz="UTC")


def some_trades(n: int = 4, feature: str = "zscore_20") -> pd.DataFrame:
    entry = pd.date_range("2021-01-04 14:30", periods=n, freq="D", tz="UTC")
    return pd.DataFrame(
        {
            "trade_id": [f"t{i}" for i in range(n)],
            "symbol": "AAA",
            "strategy": "s",
            "entry_time": entry,
            "exit_time": entry + pd.Timedelta(days=2),
            "entry_price": 100.0,
            "exit_price": 101.0,
            "side": np.int8(1),
            "return": 0.01,
            feature: np.arange(n, dtype="float64"),
        }
    )


def run_row(run_key: str = RUN, range_end: dt.date = dt.date(2021, 3, 31)) -> dict:
    row = dict.fromkeys(contract.column_names("run_metrics"))
    row.update(run_key=run_key, range_start=dt.date(2021, 1, 4), range_end=range_end, model_kind="ridge")
    row.update(n_oos=3, oos_rank_ic=0.1, created_at=pd.Timestamp("2021-04-01", tz="UTC"))
    for filled_later in runs.FILLED_LATER:
        row.pop(filled_later)
    return row


def checkpoint_row() -> dict:
    row = dict.fromkeys(c for c in contract.column_names("checkpoints") if c != "run_key")
    return {**row, "model_kind": "ridge", "path": "p.skops", "sha256": "ab"}


NO_MEMBERS = pd.DataFrame({"model_kind": pd.Series(dtype="object")})


def model_run_rows(
    run_key: str = RUN, range_end: dt.date = dt.date(2021, 3, 31), **tables
) -> runs.ModelRunRows:
    return runs.ModelRunRows(
        **{
            "run_metrics": {k: v for k, v in run_row(run_key, range_end).items() if k != "run_key"},
            "checkpoint": checkpoint_row(),
            "oos_predictions": pd.DataFrame(
                {"trade_id": ["t0"], "fold": [0], "prediction": [0.1], "realized": [0.2]}
            ),
            "sizing_performance": pd.DataFrame({"book": ["actual"], "costs": ["net"], "total_return": [0.2]}),
            "excluded_features": pd.DataFrame({"feature": ["leak"], "ic": [0.9], "reason": ["too good"]}),
            "data_loss": pd.DataFrame({"reason": ["trained on"], "n_trades": [4]}),
            "feature_coverage": pd.DataFrame(
                {"feature": ["zscore_20"], "n_values": [4], "coverage": [1.0], "used": [True]}
            ),
            "ensemble_predictions": NO_MEMBERS,
            "ensemble_metrics": NO_MEMBERS,
            **tables,
        }
    )


def write_run(db: Database, run_key: str = RUN, range_end: dt.date = dt.date(2021, 3, 31)) -> None:
    runs.write_model_run(db, run_key, model_run_rows(run_key, range_end))


def test_a_new_file_gets_every_table_of_the_contract(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    with db.connect() as con:
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    assert tables == set(contract.FIXED_TABLES)
    for table in contract.FIXED_TABLES:
        assert list(db.query(f"SELECT * FROM {table} LIMIT 0").columns) == contract.column_names(table)


def test_the_schema_is_migrated_once_per_process_and_file(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    db.query("SELECT 1")
    with duckdb.connect(db.path) as con:  # behind the process's back
        con.execute("DROP TABLE regime_weights")
    assert "regime_weights" not in set(db.query("SHOW TABLES")["name"])  # not checked on every connection
    other = Database(str(tmp_path / "other.duckdb"))
    assert "regime_weights" in set(other.query("SHOW TABLES")["name"])  # a new file is migrated


def test_a_new_file_that_takes_a_migrated_files_inode_is_migrated(tmp_path):
    """A warehouse deleted and created again in the same process can get the old file's inode (the
    ensemble benchmark's temporary warehouses did): the process's record of a migrated file must not
    leave the new one without tables. Emptied behind the process's back, the file stands for it."""
    db = Database(str(tmp_path / "w.duckdb"))
    db.query("SELECT 1")
    with duckdb.connect(db.path) as con:
        for schema, table in con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall():
            con.execute(f"DROP TABLE {schema}.{table}")
    with db.transaction() as con:
        con.execute("SELECT 1")
    assert set(db.query("SHOW TABLES")["name"]) == set(contract.FIXED_TABLES)


def test_an_older_warehouse_gets_the_new_columns(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE data_loss (run_key VARCHAR, reason VARCHAR, PRIMARY KEY (run_key, reason))")
        con.execute("INSERT INTO data_loss VALUES ('r', 'why')")
    stored = Database(str(path)).query("SELECT * FROM data_loss")
    assert list(stored.columns) == ["run_key", "reason", "n_trades"]
    assert stored["reason"].tolist() == ["why"] and stored["n_trades"].isna().all()


def test_trades_round_trip_and_replace_their_range(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    replace_trades(db, some_trades(4), START, END, "test source", 10)
    replace_trades(db, some_trades(3), START, END, "test source", 9)
    stored = trades_between(db, START, END)
    expected = some_trades(3)
    pd.testing.assert_frame_equal(stored[expected.columns], expected, check_dtype=False)
    assert source_trade_count(db, dt.date(2021, 1, 4), dt.date(2021, 3, 31)) == 9
    assert source_trade_count(db, dt.date(2020, 1, 1), dt.date(2020, 3, 31)) is None


def test_trades_entered_before_a_date_with_oddly_named_features(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    odd = 'x"; DROP TABLE trades; --'
    replace_trades(db, some_trades(4, odd), START, END, "s", 4)
    quarter = pd.DataFrame({"range_start": [dt.date(2021, 1, 4)], "range_end": [dt.date(2021, 3, 31)]})
    stored = trades_entered_before(db, pd.Timestamp("2021-01-06 12:00", tz="UTC"), [odd], quarter)
    base = ["trade_id", "strategy", "entry_time", "exit_time", "side", "return"]
    assert stored.columns.tolist() == [*base, odd]
    assert stored["trade_id"].tolist() == ["t0", "t1"] and stored[odd].tolist() == [0.0, 1.0]  # 14:30 entries
    # only the days of the runs read: a range stored by a run that ends later is not
    later = pd.DataFrame({"range_start": [dt.date(2021, 1, 5)], "range_end": [dt.date(2021, 1, 5)]})
    assert trades_entered_before(db, END, [odd], later)["trade_id"].tolist() == ["t1"]
    with pytest.raises(InputDataError, match="'momentum_20': no such feature column is stored"):
        trades_entered_before(db, END, ["momentum_20"], quarter)


def test_a_feature_name_differing_only_by_case_is_refused(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    replace_trades(db, some_trades(2, "rsi_14"), START, END, "s", 2)
    with pytest.raises(InputDataError, match="differs from the stored column 'rsi_14' only by letter case"):
        replace_trades(db, some_trades(2, "RSI_14"), START, END, "s", 2)
    assert list(trades_between(db, START, END)["rsi_14"]) == [0.0, 1.0]


def test_a_model_run_round_trips_and_is_replaced_whole(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    write_run(db)
    write_run(db)
    assert runs.runs_as_of(db, dt.date(2021, 3, 31), "ridge")["run_key"].tolist() == [RUN]
    assert runs.runs_as_of(db, dt.date(2021, 3, 30), "ridge").empty
    stored = runs.run_metrics_row(db, RUN)
    assert stored is not None and stored["oos_rank_ic"] == 0.1
    assert runs.checkpoint_of(db, RUN) == ("p.skops", "ab")
    assert runs.oos_predictions(db, RUN)["prediction"].tolist() == [0.1]
    assert runs.excluded_features(db, RUN)["feature"].tolist() == ["leak"]
    assert runs.newest_range_end(db, "ridge") == dt.date(2021, 3, 31)
    assert runs.newest_range_end(db, "gbt") is None
    for table in ["oos_predictions", "excluded_features", "data_loss", "feature_coverage", "checkpoints"]:
        assert len(db.query(f"SELECT * FROM {table}")) == 1, table


def test_a_run_row_missing_a_contract_column_is_refused(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    incomplete = {k: v for k, v in run_row().items() if k not in ("run_key", "oos_hit_rate")}
    with pytest.raises(ValueError, match=r"run_metrics row of .*: missing \['oos_hit_rate'\]"):
        runs.write_model_run(db, RUN, model_run_rows(run_metrics=incomplete))
    assert db.query("SELECT * FROM run_metrics").empty


def test_a_failed_write_leaves_the_tables_as_they_were(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    write_run(db)
    with pytest.raises(duckdb.Error):  # a column the contract does not have
        runs.write_model_run(
            db,
            RUN,
            model_run_rows(
                oos_predictions=pd.DataFrame(
                    {"trade_id": ["t9"], "fold": [0], "prediction": [0.5], "realized": [0]}
                ),
                excluded_features=pd.DataFrame({"feature": [], "ic": [], "reason": []}),
                feature_coverage=pd.DataFrame({"no_such_column": [1]}),
            ),
        )
    assert runs.oos_predictions(db, RUN)["trade_id"].tolist() == ["t0"]
    assert runs.excluded_features(db, RUN)["feature"].tolist() == ["leak"]


def test_history_round_trips_and_records_the_explainer(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    write_run(db)
    importance = pd.DataFrame(
        {"feature": ["a", "b"], "rank": [1, 2], "shap_mean_abs": [0.2, 0.1], "ic": [0.1, 0.0]}
    )
    changes = pd.DataFrame({"feature": ["a", "b"], "rank": [1, 2]})
    explanations.write_importance(db, RUN, dt.date(2021, 3, 31), importance, changes, None, "closed form", 4)
    stored = explanations.importance_history(db, [RUN, "no such run"])
    assert (
        stored["feature"].tolist() == ["a", "b"] and (stored["range_end"] == pd.Timestamp("2021-03-31")).all()
    )
    assert explanations.importance_changes(db, RUN)["previous_run_key"].isna().all()
    row = runs.run_metrics_row(db, RUN)
    assert row is not None and row["explainer"] == "closed form" and row["shap_sample_size"] == 4
    assert explanations.interactions(db, RUN).empty  # a linear model records none
    pairs = pd.DataFrame(
        {"feature_a": ["a", "a"], "feature_b": ["b", "c"], "interaction_mean_abs": [0.3, 0.1], "rank": [1, 2]}
    )
    explanations.write_importance(db, RUN, dt.date(2021, 3, 31), importance, changes, None, "tree", 4, pairs)
    assert explanations.interactions(db, RUN)[["feature_b", "rank"]].values.tolist() == [["b", 1], ["c", 2]]


def test_training_overlap_counts_match_a_loop(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    trades = some_trades(60)
    replace_trades(db, trades, START, END, "s", 60)
    stored_runs = pd.DataFrame(
        {
            "range_start": [dt.date(2021, 1, 4), dt.date(2021, 1, 20), dt.date(2021, 2, 10)],
            "range_end": [dt.date(2021, 1, 31), dt.date(2021, 2, 20), dt.date(2021, 3, 3)],
        }
    )
    counts = explanations.consecutive_training_overlap(db, stored_runs)

    def training(start: dt.date, end: dt.date) -> set[str]:
        lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1)
        chosen = (trades["entry_time"] >= lo) & (trades["entry_time"] < hi) & (trades["exit_time"] < hi)
        return set(trades.loc[chosen, "trade_id"])

    sets = [training(a, b) for a, b in zip(stored_runs["range_start"], stored_runs["range_end"], strict=True)]
    expected = [[len(sets[i]), len(sets[i + 1]), len(sets[i] & sets[i + 1])] for i in range(2)]
    np.testing.assert_array_equal(counts, expected)


def test_cross_run_tables_round_trip(tmp_path):
    db = Database(str(tmp_path / "w.duckdb"))
    write_run(db)
    per_feature = pd.DataFrame({"feature": ["b", "a"], "n_runs": [1, 1], "rank_mean": [2.0, 1.0]})
    with pytest.raises(MissingRowsError, match="materialize feature_stability"):
        cross_run.stability_summary(db, RUN)
    with pytest.raises(MissingRowsError, match="no feature_stability rows"):
        cross_run.feature_stability_rows(db, RUN)
    cross_run.write_stability(db, RUN, per_feature, {"n_runs": 1, "k": 1, "n_features": 2, "note": "one run"})
    assert cross_run.feature_stability_rows(db, RUN)["feature"].tolist() == ["a", "b"]
    assert cross_run.stability_summary(db, RUN)["note"] == "one run"
    series = pd.DataFrame(
        {
            "feature": ["a", "a", "b"],
            "period_start": pd.to_datetime(["2021-01-11", "2021-01-04", "2021-01-04"], utc=True),
            "n_trades": [12, 10, 10],
            "ic": [0.1, -0.2, 0.3],
        }
    )
    cross_run.write_alpha(db, RUN, pd.DataFrame({"feature": ["a", "b"], "alpha_score": [0.1, 0.7]}), series)
    assert cross_run.feature_alpha_rows(db, RUN)["feature"].tolist() == ["b", "a"]
    stored_series = cross_run.ic_series(db, RUN)
    assert stored_series["ic"].tolist() == [-0.2, 0.1, 0.3]  # by feature, then period
    cross_run.write_alpha(db, RUN, pd.DataFrame({"feature": ["a"], "alpha_score": [0.2]}))
    assert cross_run.ic_series(db, RUN).empty  # replaced whole with the alpha table
    priors = pd.DataFrame({"feature": ["a"], "prior_coef": [0.5], "prior_strength": [10.0], "n_runs": [1]})
    cross_run.write_priors(db, RUN, priors, None)
    assert (
        cross_run.latest_warm_start(db, "feature_priors", dt.date(2021, 3, 31), "ridge") is None
    )  # not before
    latest = cross_run.latest_warm_start(db, "feature_priors", dt.date(2021, 4, 1), "ridge")
    assert latest is not None
    key, stored = latest
    assert key == RUN and stored["prior_coef"].tolist() == [0.5]
    assert cross_run.latest_warm_start(db, "regime_weights", dt.date(2021, 4, 1), "ridge") is None


def test_report_reads_the_newest_run_or_says_what_is_wrong(tmp_path):
    for path, problem in [
        (tmp_path / "absent.duckdb", "no warehouse at"),
        (tmp_path, "is a directory"),
        (tmp_path / "empty.duckdb", "is an empty file"),
        (tmp_path / "text.duckdb", "cannot be read as a DuckDB warehouse"),
    ]:
        if path.name == "empty.duckdb":
            path.write_bytes(b"")
        if path.name == "text.duckdb":
            path.write_text("not a database\n" * 100)
        with pytest.raises(WarehouseUnreadable, match=problem):
            latest_run(path)
    db = Database(str(tmp_path / "w.duckdb"))
    db.query("SELECT 1")  # creates the file and its tables
    with pytest.raises(WarehouseUnreadable, match="holds no run yet"):
        latest_run(tmp_path / "w.duckdb")
    write_run(db, "2021-01-04..2021-02-28/ridge", dt.date(2021, 2, 28))
    write_run(db)
    latest = latest_run(tmp_path / "w.duckdb")
    assert latest.latest["run_key"] == RUN and latest.n_runs_same_kind == 2 and latest.summary is None


def test_files_are_written_atomically_and_checkpoints_are_verified(tmp_path):
    files.atomic_write(tmp_path / "a" / "x.bin", b"one")
    files.atomic_write(tmp_path / "a" / "x.bin", b"two")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.bin"]
    assert (tmp_path / "a" / "x.bin").read_bytes() == b"two"
    path, digest = files.save_checkpoint(tmp_path, {"coef": np.arange(3.0)}, RUN)
    again, same = files.save_checkpoint(tmp_path, {"coef": np.arange(3.0)}, RUN)
    assert (path, digest) == (again, same)  # deterministic bytes, content-addressed name
    np.testing.assert_array_equal(files.load_checkpoint(path, digest)["coef"], np.arange(3.0))
    with pytest.raises(ValueError, match="does not match the sha256"):
        files.load_checkpoint(path, "0" * 64)
    staged = files.stage_dashboard(tmp_path / "d", b"png-new", RUN, "run-1", is_newest=True)
    assert not (tmp_path / "d" / "latest.png").exists()  # nothing in place before publication
    newest = files.publish_dashboard(staged)
    files.publish_dashboard(
        files.stage_dashboard(
            tmp_path / "d", b"png-old", "2020-01-01..2020-03-31/ridge", "run-2", is_newest=False
        )
    )
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "2020-01-01..2020-03-31_ridge.png",
        "2021-01-04..2021-03-31_ridge.png",
        "latest.png",
    ]
    assert (tmp_path / "d" / "latest.png").read_bytes() == b"png-new" and newest.endswith("_ridge.png")


def test_a_staged_run_sees_its_rows_others_see_none_until_it_publishes(tmp_path):
    public_view = Database(str(tmp_path / "w.duckdb"))
    write_run(public_view)
    staged = Database(public_view.path, staged_by="run-1")
    replace_trades(staged, some_trades(3, "new_feature"), START, END, "s", 3)
    write_run(staged)  # the same run key again, from the staged run
    with staged.transaction() as con:  # and no regime weights this time: zero rows replace its rows
        replace_run_rows(con, "excluded_features", "run_key", RUN, pd.DataFrame({"feature": [], "ic": []}))
    assert trades_between(public_view, START, END).empty
    assert trades_between(staged, START, END)["new_feature"].tolist() == [0.0, 1.0, 2.0]
    assert runs.excluded_features(public_view, RUN)["feature"].tolist() == ["leak"]
    assert runs.excluded_features(staged, RUN).empty
    assert not publish.finish_stage(staged, ["trades"], ["trades", "profit_model"], RUN)
    assert trades_between(public_view, START, END).empty  # not every selected stage is done
    assert publish.finish_stage(staged, ["profit_model"], ["trades", "profit_model"], RUN)
    assert trades_between(public_view, START, END)["new_feature"].tolist() == [0.0, 1.0, 2.0]
    assert runs.excluded_features(public_view, RUN).empty
    assert publish.staged_runs(public_view) == []


def test_a_run_that_publishes_a_stage_removes_the_rows_of_the_stages_after_it(tmp_path):
    public_view = Database(str(tmp_path / "w.duckdb"))
    write_run(public_view)
    explanations.write_importance(
        public_view,
        RUN,
        dt.date(2021, 3, 31),
        pd.DataFrame({"feature": ["a"], "rank": [1]}),
        pd.DataFrame(),
        None,
        "x",
        1,
    )
    cross_run.write_alpha(public_view, RUN, pd.DataFrame({"feature": ["a"], "alpha_score": [0.5]}))
    staged = Database(public_view.path, staged_by="run-2")
    write_run(staged)  # a new model of the run key, and nothing after it
    assert publish.finish_stage(staged, ["profit_model"], ["profit_model"], RUN)
    assert explanations.importance_history(public_view, [RUN]).empty  # described the replaced model
    assert cross_run.feature_alpha_rows(public_view, RUN).empty
    assert runs.run_metrics_row(public_view, RUN) is not None


def test_the_staging_of_runs_that_cannot_publish_is_discarded_and_does_not_outlive_them(tmp_path):
    failed = Database(str(tmp_path / "w.duckdb"), staged_by="failed-run")
    replace_trades(failed, some_trades(2, "Gap"), START, END, "s", 2)
    publish.discard_staging(failed, ["failed-run"])
    assert publish.staged_runs(failed) == []
    later = Database(failed.path, staged_by="later-run")
    replace_trades(later, some_trades(2, "gap"), START, END, "s", 2)  # no clash with the dead run's column
    assert publish.finish_stage(later, ["trades"], ["trades"], RUN)
    assert "gap" in trades_between(Database(failed.path), START, END).columns


def test_a_feature_named_like_a_reserved_column_is_refused(tmp_path):
    with pytest.raises(InputDataError, match="'Staged_By': is a name the warehouse reserves"):
        replace_trades(Database(str(tmp_path / "w.duckdb")), some_trades(2, "Staged_By"), START, END, "s", 2)


def test_a_run_waits_for_the_run_that_holds_the_warehouse_and_says_which(tmp_path):
    """Runs on one warehouse take it one at a time (storage/run_lock.py): another process waits,
    saying which run holds it, and gives up after its bound; the lock of a run of this process that
    ended without publishing passes to the next run; a released lock is free."""
    warehouse = str(tmp_path / "w.duckdb")
    other = (
        "import sys; from persistence_pipeline.storage import run_lock; "
        "run_lock.hold_for_run(sys.argv[1], 'run-b', 0.5, print)"
    )

    def another_process() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", other, warehouse], capture_output=True, text=True)

    notes: list[str] = []
    run_lock.hold_for_run(warehouse, "run-a", 1, notes.append)
    waited = another_process()
    assert waited.returncode == 1
    assert f"waiting for Dagster run run-a (pid {os.getpid()}" in waited.stdout
    assert f"RunLockTimeout: the warehouse {warehouse} is held by Dagster run run-a" in waited.stderr
    run_lock.hold_for_run(warehouse, "run-c", 1, notes.append)  # run-a failed before publishing
    assert another_process().returncode == 1
    run_lock.release(warehouse, "run-c")
    assert another_process().returncode == 0 and notes == []
