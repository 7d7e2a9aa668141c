"""The model stage's core (core/training.py): one call gives what the stage stores; the leak screen
runs once per set of trades and its evidence is the quarantine table; the checkpoint is typed and
round-trips through its stored form, old checkpoints included."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from persistence_pipeline.core.dataset import training_set
from persistence_pipeline.core.design import DesignParams
from persistence_pipeline.core.leakage import LeakScreen, LeakScreenParams, TradeKeys, screen_features
from persistence_pipeline.core.model import ModelParams, train_and_evaluate
from persistence_pipeline.core.sizing import SizingParams
from persistence_pipeline.core.training import (
    Checkpoint,
    StoredWarmStart,
    TrainingParams,
    train,
    warm_start,
)
from persistence_pipeline.storage.contract import column_names
from persistence_pipeline_tests.simulation import SimulatedMarket, simulated_trades

pytestmark = pytest.mark.core

MARKET = SimulatedMarket(
    start="2021-01-04",
    end="2021-04-02",
    per_day=24,
    n_noise=4,
    planted={"signal": (0.1, 0.1)},
    leaks={"leak": 0.6},
)
FIRST, LAST = dt.date(2021, 1, 4), dt.date(2021, 4, 2)
PARAMS = TrainingParams(
    model=ModelParams(), design=DesignParams((), (), False), sizing=SizingParams(cost_bps=5.0)
)


@pytest.fixture(scope="module")
def trades() -> pd.DataFrame:
    return simulated_trades(MARKET, seed=3)


def run_of(trades: pd.DataFrame, params: TrainingParams = PARAMS):
    end = pd.Timestamp(LAST, tz="UTC") + pd.Timedelta(days=1)
    data = training_set(trades, end, params.design, cost=params.sizing.round_trip_cost)
    return train(data, trades, params, StoredWarmStart(), len(trades), FIRST, LAST)


def test_the_run_is_the_model_its_parts_give_and_holds_out_the_leak(trades):
    run = run_of(trades)
    data = run.data
    alone = train_and_evaluate(
        data.X,
        data.y,
        data.entry,
        data.exit,
        data.features,
        ModelParams(),
        screen=LeakScreen(data.X, data.y, data.features, LeakScreenParams(), TradeKeys.of(data.trades)),
    )
    np.testing.assert_array_equal(run.fitted.oos_prediction, alone.oos_prediction)
    np.testing.assert_array_equal(run.fitted.model.predict(data.X), alone.model.predict(data.X))
    assert run.excluded["feature"].tolist() == ["leak"]
    assert run.excluded["flagged_on"].iloc[0].endswith("all trades")
    assert run.excluded["n_folds_screened"].iloc[0] == len(run.fitted.folds) == 5
    # the label is net of the round trip: 2 x 5 bps
    gross = trades.set_index("trade_id").loc[data.trades["trade_id"], "return"].to_numpy()
    np.testing.assert_allclose(data.y, gross - 0.001)


def test_the_quarantine_rows_are_the_evidence_a_fresh_screen_gives(trades):
    """The screen's evidence is recorded once and reused; screening the widest flagged set of
    trades again, the leak alone, gives the same row."""
    run = run_of(trades)
    data, row = run.data, run.excluded.iloc[0]
    j = data.features.index("leak")
    everything = np.arange(len(data.y))
    fresh = screen_features(
        data.X[:, [j]], data.y, ["leak"], LeakScreenParams(), TradeKeys.of(data.trades).take(everything)
    ).iloc[0]
    for column in ["n_trades", "n_days", "screen_group", "reason"]:
        assert row[column] == fresh[column], column
    for column in ["ic", "ic_se", "ic_bound", "ceiling"]:  # the same sums, taken over more columns
        assert row[column] == pytest.approx(fresh[column], rel=1e-12), column
    assert row["n_screens_flagged"] == sum(bool(mask[j]) for mask in run.fitted.screen_flags)


def test_the_run_metrics_row_has_every_contract_column_the_stage_fills(trades):
    run = run_of(trades)
    row = run.run_metrics(FIRST, LAST, "run-id", pd.Timestamp("2026-01-01", tz="UTC"))
    filled_later = {"run_key", "explainer", "shap_sample_size", "inputs_digest"}
    assert set(row) == set(column_names("run_metrics")) - filled_later
    assert row["n_train"] == len(run.data.y) and row["cost_bps"] == 5.0 and row["ensemble_models"] is None
    assert row["oos_rank_ic"] == pytest.approx(run.fitted.metrics.rank_ic)


def test_the_same_trades_and_seed_give_identical_runs(trades):
    first, second = run_of(trades), run_of(trades)
    pd.testing.assert_frame_equal(first.books, second.books)
    pd.testing.assert_frame_equal(first.excluded, second.excluded)
    pd.testing.assert_frame_equal(first.performance, second.performance)


def test_ensemble_members_share_the_folds_and_the_screen(trades):
    params = TrainingParams(
        model=ModelParams(), members=(ModelParams(kind="gbt", gbt_max_iter=20),), design=PARAMS.design
    )
    run = run_of(trades, params)
    assert list(run.others) == ["gbt"] and list(run.checkpoint.members) == ["gbt"]
    np.testing.assert_array_equal(run.others["gbt"].screened, run.fitted.screened)
    assert sorted(run.ensemble_metrics["model_kind"]) == ["ensemble", "gbt", "ridge"]
    assert run.run_metrics(FIRST, LAST, None, pd.Timestamp.now(tz="UTC"))["ensemble_models"] == "ridge+gbt"


def test_the_checkpoint_round_trips_through_its_stored_form(trades):
    checkpoint = run_of(trades).checkpoint
    again = Checkpoint.from_payload(checkpoint.payload())
    assert again.features == checkpoint.features and again.train_trade_ids == checkpoint.train_trade_ids
    assert [(f.train.tolist(), f.test.tolist()) for f in again.folds] == [
        (f.train.tolist(), f.test.tolist()) for f in checkpoint.folds
    ]
    assert again.label_cost == checkpoint.label_cost == pytest.approx(0.001)
    assert again.prior is None and again.members == {}
    assert "members" not in checkpoint.payload()  # a run of one model stores no members


def test_a_checkpoint_from_before_priors_costs_and_members_loads_with_their_defaults(trades):
    stored = run_of(trades).checkpoint.payload()
    for later in ("label_cost", "prior_mean_raw", "prior_sd_raw", "members", "fold_models_screened"):
        stored.pop(later, None)
    old = Checkpoint.from_payload(stored)
    assert old.label_cost == 0.0 and old.prior is None and old.members == {} and old.fold_screened == []


def test_the_warm_start_says_why_it_hands_nothing(trades):
    data = run_of(trades).data
    cold = warm_start(PARAMS, StoredWarmStart(), data)
    assert cold.prior is None and cold.notes == (
        "priors: none (no earlier run: cold start, plain ridge)",
        "curriculum: none (curriculum is off)",
    )
    trees = TrainingParams(model=ModelParams(kind="gbt"), design=PARAMS.design)
    priors = pd.DataFrame(
        {
            "feature": ["signal"],
            "prior_coef_raw": [0.01],
            "prior_sd_raw": [0.005],
            "informative": [True],
        }
    )
    assert warm_start(trees, StoredWarmStart(("earlier", priors)), data).notes[0] == (
        "priors: none (trees cannot be shrunk toward coefficients)"
    )
    warm = warm_start(PARAMS, StoredWarmStart(("earlier", priors)), data)
    assert warm.priors_from == "earlier" and warm.prior is not None
    assert np.isfinite(warm.prior.mean_raw).sum() == 1
