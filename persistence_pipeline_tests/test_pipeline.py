"""Real range runs into a DuckDB file under tmp_path, with the stored values checked."""

import hashlib
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from sklearn.pipeline import Pipeline

from persistence_pipeline.core.model import ModelParams, train_and_evaluate
from persistence_pipeline.core.sizing import walk_forward_positions
from persistence_pipeline.core.strategies import FEATURES, generate_trades
from persistence_pipeline.resources import CheckpointStore, ModelSettings, TradeSource
from persistence_pipeline.source_files import load_embedded_bars
from persistence_pipeline.storage.contract import FIXED_TABLES, quote_identifier
from persistence_pipeline.storage.database import Database, replace_run_rows

pytestmark = pytest.mark.e2e

START, END = "2021-01-04", "2021-06-30"
RUN_KEY = f"{START}..{END}/ridge"
VOLATILE = ["dagster_run_id", "created_at"]  # differ between two runs by definition


@pytest.fixture(scope="module")
def expected_trades() -> pd.DataFrame:
    trades = generate_trades(load_embedded_bars())
    return trades[(trades["entry_time"] >= START) & (trades["entry_time"] < "2021-07-01")].reset_index(
        drop=True
    )


@pytest.fixture(scope="module")
def ran_instance():
    """The Dagster instance of the `ran` run, whose log the progress test reads."""
    return dg.DagsterInstance.ephemeral()


@pytest.fixture(scope="module")
def ran(tmp_path_factory, ran_instance):
    from persistence_pipeline_tests.conftest import Project

    project = Project(tmp_path_factory.mktemp("ran"), TradeSource(), ModelSettings())
    result = project.materialize(START, END, instance=ran_instance)
    return project, result


def test_range_run_stores_the_trades_of_the_range(ran, expected_trades):
    project, result = ran
    assert result.success
    stored = project.table("trades", order_by="entry_time, trade_id")
    assert len(stored) == len(expected_trades) == 564
    expected = expected_trades.sort_values(["entry_time", "trade_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(stored[expected.columns], expected, check_dtype=False)


STRATEGY_NAMES = ["mean_reversion", "momentum_breakout"]
DIRECTIONAL = {
    "price_position_252", "zscore_20", "rsi_14", "momentum_5", "momentum_20", "momentum_60",
    "trend_slope_20", "macd_hist_pct", "bollinger_pctb_50", "gap", "drawdown_from_high_252",
    "market_return_5",
}  # fmt: skip


def model_columns(trades: pd.DataFrame) -> pd.DataFrame:
    """The model's view of the trades, built by hand from the description in docs/statistics.md: directional
    features centred where they carry nothing of the side, then times the side; the strategy
    features split by strategy, strategy indicators and the direction (the embedded range has both
    strategies and both sides)."""
    columns = {}
    side = trades["side"].astype(float)
    for feature in FEATURES:
        if feature in DIRECTIONAL:
            values = trades[feature].astype(float)
            # the centre c solves cov(side * (x - c), side) = 0 over these trades
            balance = side.mean() if len(trades) else 0.0
            centre = (
                (values.mean() - (side * values).mean() * balance) / (1 - balance**2) if len(trades) else 0.0
            )
            columns[feature] = (values - centre) * side
        elif feature in ("signal_strength", "strategy_confidence"):
            for name in STRATEGY_NAMES:
                columns[f"{feature}@{name}"] = trades[feature].where(trades["strategy"] == name, 0.0)
        else:
            columns[feature] = trades[feature]
    for name in STRATEGY_NAMES:
        columns[f"strategy@{name}"] = (trades["strategy"] == name).astype(float)
    columns["direction"] = trades["side"].astype(float)
    return pd.DataFrame(columns)


MODEL_FEATURES = list(model_columns(pd.DataFrame(columns=[*FEATURES, "side", "strategy"])).columns)


def test_run_metrics_are_the_out_of_sample_results(ran, expected_trades):
    project, _ = ran
    metrics = project.table("run_metrics")
    assert metrics["run_key"].tolist() == [RUN_KEY]
    row = metrics.iloc[0]
    end = pd.Timestamp("2021-07-01", tz="UTC")
    still_open = expected_trades["exit_time"] >= end
    cut = expected_trades.loc[still_open, "entry_time"].min()  # the first trade open at the end
    labelled = expected_trades[expected_trades["entry_time"] < cut]
    labelled = labelled.sort_values(["entry_time", "trade_id"]).reset_index(drop=True)
    assert row["n_trades"] == 564
    assert row["n_train"] == len(labelled)
    assert row["n_unrealized"] == int(still_open.sum()) > 0
    assert row["n_censored"] == 564 - row["n_unrealized"] - len(labelled)
    assert row["priors_from_run_key"] is None or pd.isna(row["priors_from_run_key"])
    assert row["model_kind"] == "ridge" and row["n_features"] == len(MODEL_FEATURES) == 24
    assert row["cost_bps"] == 5.0
    net = labelled["return"].to_numpy() - 2 * 5.0 / 10_000  # the label: net of a round trip's cost
    X = model_columns(labelled).to_numpy()
    fitted = train_and_evaluate(
        X,
        net,
        labelled["entry_time"].to_numpy("datetime64[us]"),
        labelled["exit_time"].to_numpy("datetime64[us]"),
        MODEL_FEATURES,
        ModelParams(),
    )
    realized = net[fitted.oos_positions]
    assert row["oos_rank_ic"] == pytest.approx(
        scipy.stats.spearmanr(fitted.oos_prediction, realized).statistic
    )
    taken = fitted.oos_prediction > 0
    assert row["oos_hit_rate"] == pytest.approx((realized[taken] > 0).mean())
    assert row["oos_mean_return_all"] == pytest.approx(realized.mean())
    assert row["n_oos"] == len(realized)
    assert row["explainer"].startswith("closed-form linear")
    assert row["shap_sample_size"] == len(labelled)
    assert row["dagster_run_id"] == ran[1].run_id
    # the OOS books: positions from each fold's model and training trades (core/sizing.py)
    position, _ = walk_forward_positions(fitted, X, net, labelled["volatility_20"].to_numpy(), 3.0)
    stored = project.table("oos_predictions").set_index("trade_id")
    ids = labelled["trade_id"].to_numpy()[fitted.oos_positions]
    assert stored.loc[ids, "position"].to_numpy() == pytest.approx(position)
    books = project.table("sizing_performance").set_index(["book", "costs"])
    assert len(books) == 6 and (books["cost_bps"] == 5.0).all()
    gross = labelled["return"].to_numpy()[fitted.oos_positions]
    assert books.loc[("actual", "gross"), "total_return"] == pytest.approx(gross.sum())
    assert books.loc[("actual", "net"), "n_trades"] == row["n_oos"]
    assert books.loc[("equal", "net"), "n_trades"] == row["oos_n_taken"] == taken.sum()
    assert books.loc[("sized", "gross"), "total_return"] == pytest.approx(position @ gross)


def test_checkpoint_is_indexed_and_predicts(ran):
    project, _ = ran
    index = project.table("checkpoints")
    assert index["run_key"].tolist() == [RUN_KEY]
    path = Path(index["path"].iloc[0])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == index["sha256"].iloc[0]
    assert list(path.parent.glob("*")) == [path]
    checkpoint = CheckpointStore(directory=str(project.checkpoint_dir)).load(
        str(path), index["sha256"].iloc[0]
    )
    trades = project.table("trades", order_by="entry_time, trade_id")
    assert checkpoint.features == MODEL_FEATURES
    prediction = checkpoint.model.predict(model_columns(trades).to_numpy())
    assert prediction.shape == (564,) and np.isfinite(prediction).all()
    assert index["oos_rank_ic"].iloc[0] == project.table("run_metrics")["oos_rank_ic"].iloc[0]


def test_tampered_checkpoint_is_refused(ran, tmp_path):
    project, _ = ran
    index = project.table("checkpoints")
    tampered = tmp_path / "model.skops"
    data = bytearray(Path(index["path"].iloc[0]).read_bytes())
    data[-10] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the sha256 in the checkpoints index"):
        CheckpointStore(directory=str(tmp_path)).load(str(tampered), index["sha256"].iloc[0])


def test_importance_history_has_one_ranked_row_per_feature(ran):
    project, _ = ran
    history = project.table("feature_importance_history", order_by="rank")
    assert len(history) == len(MODEL_FEATURES)
    assert set(history["feature"]) == set(MODEL_FEATURES)
    assert history["rank"].tolist() == list(range(1, len(MODEL_FEATURES) + 1))
    assert history["shap_mean_abs"].is_monotonic_decreasing
    assert (history["perm_importance_std"] >= 0).all()
    assert (history["range_end"] == pd.Timestamp(END)).all()
    trades = project.table("trades")
    cut = trades.loc[trades["exit_time"] >= pd.Timestamp("2021-07-01", tz="UTC"), "entry_time"].min()
    labelled = trades[trades["entry_time"] < cut]  # the trades the model learned from
    columns = model_columns(labelled)
    for _, row in history.iloc[:3].iterrows():
        assert row["ic"] == pytest.approx(
            scipy.stats.spearmanr(columns[row["feature"]], labelled["return"]).statistic
        )
    # within each strategy and side, the IC of the same columns over that segment's trades
    segments = project.table("feature_segments").set_index(["segment", "feature"])
    for segment, rows in [
        ("strategy=mean_reversion", labelled["strategy"] == "mean_reversion"),
        ("side=short", labelled["side"] < 0),
    ]:
        row = segments.loc[(segment, "trend_slope_20")]
        assert row["n_trades"] == rows.sum()
        expected = scipy.stats.spearmanr(columns.loc[rows, "trend_slope_20"], labelled.loc[rows, "return"])
        assert row["ic"] == pytest.approx(expected.statistic)
    assert set(segments.index.get_level_values("segment")) == {
        "strategy=mean_reversion",
        "strategy=momentum_breakout",
        "side=long",
        "side=short",
    }


def test_same_range_twice_gives_identical_rows_and_no_duplicates(ran):
    project, _ = ran
    tables = ["trades", "run_metrics", "checkpoints", "feature_importance_history"]
    before = {name: project.table(name).drop(columns=VOLATILE, errors="ignore") for name in tables}
    project.materialize(START, END)
    for name in tables:
        after = project.table(name).drop(columns=VOLATILE, errors="ignore")
        pd.testing.assert_frame_equal(after, before[name])
    assert len(list(project.checkpoint_dir.rglob("*.skops"))) == 1


def test_next_range_adds_a_run_and_keeps_the_first(ran):
    project, _ = ran
    first = project.table("feature_importance_history")
    project.materialize("2021-07-01", "2021-09-30")
    metrics = project.table("run_metrics", order_by="range_end")
    assert metrics["run_key"].tolist() == [RUN_KEY, "2021-07-01..2021-09-30/ridge"]
    history = project.table("feature_importance_history")
    pd.testing.assert_frame_equal(history[history["run_key"] == RUN_KEY].reset_index(drop=True), first)
    assert len(project.table("trades")) > 564


def test_stored_priors_warm_start_the_model(tmp_path, ran):
    from persistence_pipeline_tests.conftest import Project

    project = Project(tmp_path, TradeSource(), ModelSettings())
    warehouse = Database(str(project.warehouse_path))
    prior = pd.DataFrame(
        {
            "as_of_run_key": "2020-07-01..2020-12-31/ridge",
            "feature": MODEL_FEATURES,
            "prior_coef_raw": np.linspace(-0.01, 0.01, len(MODEL_FEATURES)),
            "prior_sd_raw": 1e-9,  # a prior far more precise than the data holds the coefficients
            "n_runs": 1,
            "informative": True,
        }
    )
    earlier_run = pd.DataFrame(
        [
            {
                "run_key": "2020-07-01..2020-12-31/ridge",
                "range_start": pd.Timestamp("2020-07-01"),
                "range_end": pd.Timestamp("2020-12-31"),
                "model_kind": "ridge",
                "created_at": pd.Timestamp.now(tz="UTC"),
            }
        ]
    )
    with warehouse.transaction() as con:
        replace_run_rows(con, "feature_priors", "as_of_run_key", "2020-07-01..2020-12-31/ridge", prior)
        replace_run_rows(con, "run_metrics", "run_key", "2020-07-01..2020-12-31/ridge", earlier_run)
    project.materialize(START, END)
    row = project.table("run_metrics").set_index("run_key").loc[RUN_KEY]
    assert row["priors_from_run_key"] == "2020-07-01..2020-12-31/ridge"
    assert row["alpha_used"] == ModelSettings().ridge_alpha  # the prior does not move the base alpha
    assert row["prior_weight"] > 0.999
    history = project.table("feature_importance_history").set_index("feature").loc[MODEL_FEATURES]
    index = project.table("checkpoints").set_index("run_key").loc[RUN_KEY]
    model = CheckpointStore(directory=str(project.checkpoint_dir)).load(index["path"], index["sha256"]).model
    assert isinstance(model, Pipeline)
    raw = model.named_steps["ridge"].coef_ / model.named_steps["scale"].scale_
    np.testing.assert_allclose(raw, prior["prior_coef_raw"], rtol=1e-5, atol=1e-9)
    # the run's own evidence, for the next prior, is the ridge without the prior
    assert not np.allclose(history["own_coef_raw"], prior["prior_coef_raw"], atol=1e-4)


def test_gradient_boosted_trees_are_selectable(tmp_path):
    from persistence_pipeline_tests.conftest import Project

    project = Project(
        tmp_path, TradeSource(), ModelSettings(kind="gbt", shap_sample_size=100, perm_repeats=2)
    )
    project.materialize("2021-01-01", "2021-03-01", monthly=True)  # a quarter, as months: less bookkeeping
    row = project.table("run_metrics").iloc[0]
    assert row["run_key"] == "2021-01-01..2021-03-31/gbt" and row["explainer"] == "shap.TreeExplainer"
    assert row["shap_sample_size"] == 100
    history = project.table("feature_importance_history")
    assert history["coef"].isna().all() and (history["shap_mean_abs"] > 0).any()


@pytest.mark.parametrize(
    "name", ["plain", 'quote"inside', "it's", "space name", "ünïcødé 数", "x; DROP TABLE trades; --"]
)
def test_quote_identifier_round_trips_any_name(tmp_path, name):
    import duckdb

    with duckdb.connect(str(tmp_path / "q.duckdb")) as con:
        con.execute(f"CREATE TABLE t ({quote_identifier(name)} DOUBLE)")
        con.execute("INSERT INTO t VALUES (?)", [1.5])
        assert [d[0] for d in con.execute("SELECT * FROM t").description] == [name]
        assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_quote_identifier_refuses_nul():
    with pytest.raises(ValueError):
        quote_identifier("a\x00b")


def test_progress_counts_and_stage_timings_are_logged(ran, ran_instance):
    import re

    project, result = ran
    n_train = int(project.table("run_metrics")["n_train"].iloc[0])
    messages = [entry.user_message for entry in ran_instance.all_logs(result.run_id)]
    text = "\n".join(messages)
    assert re.search(r"read and validated trades from embedded data .*: \d+\.\d\d s", text)
    assert f"564 of 12581 trades of the source entered in {START}..{END}" in text
    assert re.search(r"replaced the range's rows of table trades with 564 trades: \d+\.\d\d s", text)
    assert f"{RUN_KEY}: {n_train} labelled trades x 24 features" in text
    assert re.search(r"ridge: leak screen, 5-fold purged walk-forward and final fit: \d+\.\d\d s", text)
    assert re.search(
        r"importance of 24 features \(5 permutation repeats, 20 bootstrap rounds\): \d+\.\d\d s", text
    )


def test_fixed_tables_have_exactly_the_contract_columns(ran):
    project, _ = ran

    for table, (columns, _) in FIXED_TABLES.items():
        stored = list(project.table(table).columns)
        expected = [name for name, _ in columns]
        if table == "trades":
            assert stored[: len(expected)] == expected and stored[len(expected) :] == FEATURES
        else:
            assert stored == expected, table
