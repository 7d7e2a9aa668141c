"""Ensemble alpha (core/ensemble.py): the average and its metrics against scipy, the agreement by
hand and against scipy, the cross-run view by hand, judged on simulated markets (agreement of noise
features near chance, with overlapping and non-overlapping windows; a planted feature in every
model's top k), and one ensemble run through the pipeline whose every table is checked against the
others and against a run of the ridge alone."""

import itertools

import dagster as dg
import numpy as np
import pandas as pd
import pydantic
import pytest
from scipy import stats

from persistence_pipeline.core.ensemble import (
    ENSEMBLE,
    ensemble_line,
    ensemble_prediction,
    ensemble_view,
    fold_scales,
    member_metrics,
    rank_agreement,
    rank_spearman,
    with_ensemble_view,
)
from persistence_pipeline.core.importance import ImportanceParams
from persistence_pipeline.core.leakage import LeakScreen, LeakScreenParams, TradeKeys
from persistence_pipeline.core.model import ModelParams, screens_of, train_and_evaluate
from persistence_pipeline.core.report import render_report
from persistence_pipeline.core.stability import non_overlapping_runs
from persistence_pipeline.resources import CheckpointStore, ModelSettings, TradeSource
from persistence_pipeline.storage.latest_run import latest_run
from persistence_pipeline_tests.conftest import Project
from persistence_pipeline_tests.simulation import (
    SimulatedMarket,
    ensemble_windows,
    simulated_trades,
    trade_log,
)


@pytest.mark.core
@pytest.mark.parametrize(
    ("kind", "ensemble", "message"),
    [
        ("ridge", ["ridge"], "other than kind"),
        ("ridge", ["gbt", "gbt"], "each once"),
        ("gbt", ["xgboost"], "not one of"),
    ],
)
def test_the_ensemble_setting_is_checked(kind, ensemble, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        ModelSettings(kind=kind, ensemble=ensemble)
    assert ModelSettings(kind="gbt", ensemble=["ridge"]).members() == ["gbt", "ridge"]
    assert ModelSettings().members() == ["ridge"]


@pytest.mark.core
def test_the_average_is_of_standardized_predictions_and_its_metrics_against_scipy():
    rng = np.random.default_rng(0)
    realized = rng.normal(size=300)
    predictions = {"ridge": realized * 0.2 + rng.normal(size=300), "gbt": 3 * rng.normal(size=300)}
    scales = {"ridge": np.full(300, 0.5), "gbt": np.r_[np.full(150, 3.0), np.full(150, 0.0)]}
    average = ensemble_prediction(predictions, scales)
    by_hand = 0.5 * (predictions["ridge"] / 0.5 + np.r_[predictions["gbt"][:150] / 3.0, np.zeros(150)]) * 0.5
    assert average == pytest.approx(by_hand)  # a constant fold model (scale 0) adds nothing
    # where the run model's fold model predicts a constant, the average is in the others' units
    flat = {"ridge": np.r_[np.zeros(150), np.full(150, 0.5)], "gbt": np.full(300, 3.0)}
    in_units = ensemble_prediction(predictions, flat)
    assert in_units[:150] == pytest.approx(0.5 * predictions["gbt"][:150] / 3.0 * 3.0)
    assert in_units[150:] == pytest.approx(
        0.5 * (predictions["ridge"][150:] / 0.5 + predictions["gbt"][150:] / 3.0) * 0.5
    )
    metrics = member_metrics(predictions, scales, realized).set_index("model_kind")
    assert metrics.index.tolist() == ["ridge", "gbt", ENSEMBLE]
    assert metrics["weight"].tolist()[:2] == [0.5, 0.5] and np.isnan(metrics.loc[ENSEMBLE, "weight"])
    for kind, prediction in [*predictions.items(), (ENSEMBLE, average)]:
        assert metrics.loc[kind, "oos_rank_ic"] == pytest.approx(stats.spearmanr(prediction, realized)[0])
        taken = prediction > 0
        assert metrics.loc[kind, "oos_hit_rate"] == pytest.approx((realized[taken] > 0).mean())
        assert metrics.loc[kind, "n_oos"] == 300


@pytest.mark.core
def test_fold_scales_by_a_loop_over_the_folds():
    trades = simulated_trades(SimulatedMarket(start="2021-01-01", end="2021-03-31", per_day=20, n_noise=3), 0)
    features = ["noise_00", "noise_01", "noise_02"]
    X, y = trades[features].to_numpy(), trades["return"].to_numpy()
    times = (
        trades["entry_time"].dt.tz_convert(None).to_numpy(),
        trades["exit_time"].dt.tz_convert(None).to_numpy(),
    )
    fitted = train_and_evaluate(X, y, *times, features, ModelParams(kind="gbt", n_folds=3, gbt_max_iter=20))
    expected = []
    for model, fold in zip(fitted.fold_models, fitted.folds, strict=True):
        spread = np.std(model.predict(X[fold.train]))  # what the fold knew before its test block
        expected += [spread] * fold.test.size
    assert fold_scales(fitted, X) == pytest.approx(np.array(expected))


@pytest.mark.core
def test_a_member_is_held_to_the_run_models_leak_screen_without_screening_again():
    trades = simulated_trades(SimulatedMarket(start="2021-01-01", end="2021-04-30", per_day=20, n_noise=3), 1)
    rng = np.random.default_rng(2)
    trades["leaky"] = trades["return"] + rng.normal(scale=0.002, size=len(trades))  # as if known at exit
    features = ["noise_00", "noise_01", "noise_02", "leaky"]
    X, y = trades[features].to_numpy(), trades["return"].to_numpy()
    times = (
        trades["entry_time"].dt.tz_convert(None).to_numpy(),
        trades["exit_time"].dt.tz_convert(None).to_numpy(),
    )
    screen = LeakScreen(X, y, features, LeakScreenParams(), TradeKeys.of(trades))
    ridge = train_and_evaluate(X, y, *times, features, ModelParams(n_folds=3), screen=screen)
    assert ridge.screened is not None and ridge.screened.tolist() == [False, False, False, True]
    trees = train_and_evaluate(
        X, y, *times, features, ModelParams(kind="gbt", n_folds=3, gbt_max_iter=20), screen=screens_of(ridge)
    )
    assert [m.tolist() for m in trees.fold_screened] == [m.tolist() for m in ridge.fold_screened]
    assert all(m.tolist() == ridge.screened.tolist() for m in ridge.fold_screened)
    assert trees.screened is not None and trees.screened.tolist() == ridge.screened.tolist()


def _importance(shap: dict[str, list[float]], features: str, quarantined: str = "") -> pd.DataFrame:
    rows = [
        {"model_kind": kind, "feature": f, "shap_mean_abs": value, "rank": pd.NA if f in quarantined else 0}
        for kind, values in shap.items()
        for f, value in zip(features, values, strict=True)
    ]
    return pd.DataFrame(rows).astype({"rank": "Int64"})


@pytest.mark.core
def test_the_agreement_by_hand_with_ties_zeros_and_a_quarantined_feature():
    # ridge ranks a b c d; the trees rank c a, then b and d tied at 0 (rank 3.5 each); e quarantined
    importance = _importance(
        {"ridge": [0.5, 0.4, 0.3, 0.2, 0.0], "gbt": [0.3, 0.0, 0.6, 0.0, 0.0]}, "abcde", "e"
    )
    table = rank_agreement(importance, top_k=2).set_index("feature")
    assert table.index.tolist() == ["a", "c", "b", "d", "e"]  # by worst rank (2 3 3.5 4), then best
    assert table["rank_max"].tolist()[:4] == [2, 3, 3.5, 4] and table["rank_min"].tolist()[:4] == [
        1,
        1,
        2,
        3.5,
    ]
    assert table["rank_gap"].tolist()[:4] == [1, 2, 1.5, 0.5] and pd.isna(table.loc["e", "rank_gap"])
    assert table.index[table["in_all_top_k"]].tolist() == ["a"]  # b: 2 and 3.5; c: 3 and 1
    assert table.index[table["in_any_top_k"]].tolist() == ["a", "c", "b"]
    assert table.loc["e", "n_models"] == 0 and table.loc["a", "n_models"] == 2 and (table["k"] == 2).all()
    expected = stats.spearmanr([0.5, 0.4, 0.3, 0.2], [0.3, 0.0, 0.6, 0.0])[0]  # ties averaged, as scipy
    assert table["rank_spearman"].unique().tolist() == pytest.approx([expected])


@pytest.mark.core
def test_a_feature_of_no_importance_is_in_no_top_k_and_k_leaves_one_feature_out():
    # the trees split on a alone: b..e tie at 0 with rank 3.5, inside a top 4, yet none is "in" it
    importance = _importance({"ridge": [0.5, 0.4, 0.3, 0.2, 0.1], "gbt": [0.3, 0.0, 0.0, 0.0, 0.0]}, "abcde")
    table = rank_agreement(importance, top_k=4).set_index("feature")
    assert table.index[table["in_all_top_k"]].tolist() == ["a"]
    # a top k of every feature says nothing: k is cut to 4 of 5
    assert (rank_agreement(importance, top_k=10)["k"] == 4).all()


@pytest.mark.core
def test_rank_spearman_against_scipy_with_three_members_ties_and_unranked_features():
    rng = np.random.default_rng(1)
    features = [f"f{i}" for i in range(30)]
    wide = pd.DataFrame(
        {kind: rng.exponential(size=30) for kind in ["ridge", "gbt", "other"]}, index=features
    )
    wide.iloc[:8, 1] = 0.0  # trees that never split on eight features
    wide.iloc[[3, 17], :] = np.nan  # quarantined: no member ranks them
    kept = wide.dropna()
    pairs = [stats.spearmanr(kept[a], kept[b])[0] for a, b in itertools.combinations(kept.columns, 2)]
    assert rank_spearman(wide) == pytest.approx(np.mean(pairs))
    assert np.isnan(rank_spearman(wide.iloc[:2]))
    flat = wide.assign(gbt=0.0)  # trees that split on nothing: they agree with no one, and add no NaN
    kept = flat.dropna()
    assert rank_spearman(flat) == pytest.approx(stats.spearmanr(kept["ridge"], kept["other"])[0])
    assert np.isnan(rank_spearman(flat[["ridge", "gbt"]]))


@pytest.mark.core
def test_the_cross_run_view_by_hand_over_non_overlapping_runs():
    ranges = pd.DataFrame(
        {
            "run_key": ["r1", "r2", "r3", "alone"],
            "range_start": pd.to_datetime(["2021-01-01", "2021-02-01", "2021-01-15", "2021-02-15"]),
            "range_end": pd.to_datetime(["2021-01-31", "2021-02-28", "2021-02-20", "2021-03-15"]),
        }
    )  # r3 overlaps r2 and is left out, as stability leaves it out; `alone` had no ensemble: it
    # overlaps r2 and must not push r2 out (the runs compared are chosen among the ensemble runs)
    agreement = pd.DataFrame(
        {
            "run_key": ["r1", "r1", "r2", "r3", "r3"],
            "feature": ["a", "b", "a", "a", "b"],
            "in_all_top_k": [True, False, True, False, True],
            "rank_gap": [0.0, 3.0, 1.0, 5.0, 0.0],
        }
    )  # b is not among r2's features: a run without it counts as "not in every top k"
    view = ensemble_view(agreement, ranges).set_index("feature")
    assert view.loc["a"].tolist() == pytest.approx([2, 1.0, 0.5])
    assert view.loc["b"].tolist() == pytest.approx([2, 0.0, 3.0])
    alpha = pd.DataFrame({"feature": ["a", "b", "c"], "alpha_score": [0.5, 0.2, 0.1]})
    table = with_ensemble_view(alpha, agreement, ranges)
    assert table["n_ensemble_runs"].tolist() == [2, 2, 2]
    assert table["all_models_top_k_frequency"].tolist() == [1.0, 0.0, 0.0] and np.isnan(
        table["mean_rank_gap"].iloc[2]
    )
    alone = with_ensemble_view(alpha, agreement.iloc[0:0], ranges)
    assert alone["n_ensemble_runs"].tolist() == [0, 0, 0] and alone["all_models_top_k_frequency"].isna().all()


@pytest.mark.core
def test_the_summary_line():
    metrics = pd.DataFrame({"model_kind": ["ridge", "gbt", ENSEMBLE], "oos_rank_ic": [0.05, 0.02, 0.04]})
    agreement = pd.DataFrame(
        {"feature": ["a", "b"], "in_all_top_k": [True, False], "k": [5, 5], "rank_spearman": [0.61, 0.61]}
    )
    assert ensemble_line(metrics, agreement) == (
        "Ensemble: OOS rank IC ridge +0.0500, gbt +0.0200, ensemble +0.0400; importance ranks agree "
        "with Spearman +0.61; in every model's top 5: a"
    )
    assert ensemble_line(metrics.iloc[0:0], agreement.iloc[0:0]) == (
        "Ensemble: none (the run fit one model; model_settings.ensemble adds others)"
    )


# --- judged on simulated markets -------------------------------------------------------------------

TOP_K, N_NOISE = 5, 20
CHEAP = ModelParams(n_folds=3, gbt_max_iter=60)
SHAP = ImportanceParams(shap_sample_size=1000)
MONTHS = pd.date_range("2021-01-01", "2021-12-01", freq="MS")
NON_OVERLAPPING = [(str(m.date()), str((m + pd.offsets.MonthEnd(2)).date())) for m in MONTHS[::2]]
OVERLAPPING = [(str(m.date()), str((m + pd.offsets.MonthEnd(3)).date())) for m in MONTHS[:9]]


@pytest.mark.core
@pytest.mark.parametrize("windows", [NON_OVERLAPPING, OVERLAPPING], ids=["non-overlapping", "overlapping"])
def test_on_noise_agreement_is_above_chance_yet_rare_and_a_planted_feature_is_in_every_top_k(windows):
    """A year of simulated trades, as 6 two-month runs (non-overlapping) or 9 four-month runs moved by
    a month (overlapping: the view compares the 3 that do not overlap). Without signal a noise
    feature is in both the ridge's and the trees' top 5 of 20 in (5/20)^2 = 6% of runs if the models
    ranked independently; both fit the same in-sample noise, so more often (10-13% measured), which
    is why agreement is no evidence of alpha; and few noise features (at most 2 of 20) are in every
    top 5 in half the compared runs. A planted feature is in both top 5 in every run."""
    null = SimulatedMarket(start="2021-01-01", end="2021-12-31", per_day=20, n_symbols=30, n_noise=N_NOISE)
    agreement, _, ranges = ensemble_windows(null, 3, windows, ["ridge", "gbt"], TOP_K, CHEAP, SHAP)
    assert (TOP_K / N_NOISE) ** 2 < agreement["in_all_top_k"].mean() < 0.2
    view = ensemble_view(agreement, ranges)
    assert view["n_ensemble_runs"].iloc[0] == len(non_overlapping_runs(ranges))
    assert (view["all_models_top_k_frequency"] >= 0.5).sum() <= 2
    planted = SimulatedMarket(
        start="2021-01-01",
        end="2021-12-31",
        per_day=20,
        n_symbols=30,
        n_noise=N_NOISE,
        planted={"signal": (0.2, 0.2)},
    )
    agreement, metrics, ranges = ensemble_windows(planted, 3, windows, ["ridge", "gbt"], TOP_K, CHEAP, SHAP)
    assert agreement.loc[agreement["feature"] == "signal", "in_all_top_k"].all()
    assert (
        ensemble_view(agreement, ranges).set_index("feature").loc["signal", "all_models_top_k_frequency"]
        == 1.0
    )
    mean_ic = metrics.groupby("model_kind")["oos_rank_ic"].mean()
    assert mean_ic["ridge"] > 0.1 and mean_ic[ENSEMBLE] > 0.1  # a linear signal: the ridge finds it


@pytest.mark.core
def test_a_u_shaped_feature_correlates_with_the_return_through_its_size_alone():
    """The simulated U-shaped effect (benchmarks/ensemble.py's market for trees): |x| carries the
    planted IC, x itself none."""
    market = SimulatedMarket(start="2021-01-01", end="2021-12-31", per_day=40, n_noise=1, u_shaped={"u": 0.1})
    trades = simulated_trades(market, 0)
    assert np.corrcoef(np.abs(trades["u"]), trades["return"])[0, 1] == pytest.approx(0.1, abs=0.03)
    assert abs(stats.spearmanr(trades["u"], trades["return"])[0]) < 0.03


# --- through the pipeline --------------------------------------------------------------------------

PIPELINE_MARKET = SimulatedMarket(
    start="2021-01-01",
    end="2021-05-31",
    per_day=30,
    n_symbols=30,
    n_noise=8,
    planted={"signal": (0.15, 0.15)},
)
RANGES = [("2021-01-01", "2021-02-01"), ("2021-03-01", "2021-04-01")]  # months of the history location


def _project(root, ensemble: list[str]) -> Project:
    log = root / "log"
    log.mkdir(parents=True)
    trade_log(simulated_trades(PIPELINE_MARKET, seed=4)).to_parquet(log / "trades.parquet")
    return Project(
        root,
        TradeSource(kind="trade_log_dir", path=str(log)),
        ModelSettings(ensemble=ensemble, perm_repeats=2, bootstrap_rounds=5, shap_sample_size=500),
    )


@pytest.mark.e2e
def test_an_ensemble_run_stores_every_member_their_average_and_their_agreement(tmp_path):
    """Two ranges with the ridge and the trees in each run: the ridge is the run's model, unchanged by
    the ensemble (its predictions and importances equal those of a run of the ridge alone); every
    stored figure agrees with the rows it comes from; the cross-run view, the dashboard summary and
    the report carry it."""
    project = _project(tmp_path / "ensemble", ["gbt"])
    results = [project.materialize(*dates, monthly=True) for dates in RANGES]
    alone = _project(tmp_path / "alone", [])
    alone.materialize(*RANGES[0], without=("persistence_dashboard",), monthly=True)
    first = "2021-01-01..2021-02-28/ridge"

    runs = project.table("run_metrics", "range_end")
    assert runs["ensemble_models"].tolist() == ["ridge+gbt", "ridge+gbt"]
    assert runs["run_key"].tolist() == [first, "2021-03-01..2021-04-30/ridge"]
    assert alone.table("run_metrics")["ensemble_models"].isna().all()
    for table in ("ensemble_predictions", "ensemble_metrics", "ensemble_importance", "model_agreement"):
        assert alone.table(table).empty

    oos = project.table("oos_predictions").set_index(["run_key", "trade_id"]).sort_index()
    members = project.table("ensemble_predictions").pivot(
        index=["run_key", "trade_id"], columns="model_kind", values="prediction"
    )
    members = members.sort_index()
    scales = project.table("ensemble_predictions").pivot(
        index=["run_key", "trade_id"], columns="model_kind", values="scale"
    )
    scales = scales.sort_index()
    assert members.index.equals(oos.index) and (scales[["ridge", "gbt"]] > 0).all().all()
    assert members["ridge"].to_numpy() == pytest.approx(oos["prediction"].to_numpy(), abs=1e-15)
    standardized = (members["ridge"] / scales["ridge"] + members["gbt"] / scales["gbt"]) / 2
    assert members[ENSEMBLE].to_numpy() == pytest.approx((standardized * scales["ridge"]).to_numpy())
    assert scales[ENSEMBLE].equals(scales["ridge"])  # the average is in the run model's units
    # each fold's scale is one number: the spread of that fold model's predictions on its training trades
    fold_of = project.table("ensemble_predictions").groupby(["run_key", "model_kind", "fold"])["scale"]
    assert (fold_of.nunique() == 1).all()
    alone_oos = alone.table("oos_predictions").set_index("trade_id").sort_index()
    assert oos.loc[first, "prediction"].to_numpy() == pytest.approx(
        alone_oos["prediction"].to_numpy(), abs=1e-15
    )

    metrics = project.table("ensemble_metrics").set_index(["run_key", "model_kind"])
    for (run_key, kind), row in metrics.iterrows():
        expected = stats.spearmanr(members.loc[run_key, kind], oos.loc[run_key, "realized"])[0]
        assert row["oos_rank_ic"] == pytest.approx(expected)
        assert row["n_oos"] == len(oos.loc[run_key])
    assert metrics.loc[(first, "ridge"), "oos_rank_ic"] == pytest.approx(runs["oos_rank_ic"].iloc[0])

    checkpoint_row = project.table("checkpoints").set_index("run_key").loc[first]
    checkpoint = CheckpointStore(directory=str(project.checkpoint_dir)).load(
        checkpoint_row["path"], checkpoint_row["sha256"]
    )
    member = checkpoint.members["gbt"]
    assert (
        list(checkpoint.members) == ["gbt"] and type(member.model).__name__ == "HistGradientBoostingRegressor"
    )
    assert [type(m).__name__ for m in member.fold_models] == ["HistGradientBoostingRegressor"] * len(
        checkpoint.fold_models
    )
    alone_row = alone.table("checkpoints").iloc[0]
    alone_checkpoint = CheckpointStore(directory=str(alone.checkpoint_dir)).load(
        alone_row["path"], alone_row["sha256"]
    )
    assert not alone_checkpoint.members  # a run of one model

    importance = project.table("ensemble_importance")
    by_kind = importance.pivot(index=["run_key", "feature"], columns="model_kind", values="shap_mean_abs")
    assert not np.allclose(by_kind["ridge"], by_kind["gbt"])  # the trees are explained, not the ridge twice
    history = project.table("feature_importance_history").set_index(["run_key", "feature"])
    ridge = importance[importance["model_kind"] == "ridge"].set_index(["run_key", "feature"])
    assert ridge["rank"].equals(history.loc[ridge.index, "rank"])
    alone_history = alone.table("feature_importance_history").set_index("feature")
    assert history.loc[first, "shap_mean_abs"].sort_index().to_numpy() == pytest.approx(
        alone_history["shap_mean_abs"].sort_index().to_numpy()
    )
    agreement = project.table("model_agreement")
    for run_key, rows in agreement.groupby("run_key"):
        shap = importance[importance["run_key"] == run_key].pivot(
            index="feature", columns="model_kind", values="shap_mean_abs"
        )
        spearman = stats.spearmanr(shap["ridge"], shap["gbt"])[0]  # no feature is quarantined here
        assert rows["rank_spearman"].iloc[0] == pytest.approx(spearman)
        ranks = shap.apply(lambda column: stats.rankdata(-column, method="average"))
        in_top = ((ranks <= 5) & (shap > 0)).all(axis=1)
        assert rows.set_index("feature")["in_all_top_k"].to_dict() == in_top.to_dict()
        assert rows.set_index("feature").loc["signal", "in_all_top_k"]  # both models find the planted feature

    alpha = project.table("feature_alpha")
    latest = alpha[alpha["as_of_run_key"] == runs["run_key"].iloc[-1]].set_index("feature")
    expected_frequency = agreement.groupby("feature")["in_all_top_k"].mean()
    assert latest["n_ensemble_runs"].eq(2).all()
    assert latest["all_models_top_k_frequency"].to_dict() == pytest.approx(expected_frequency.to_dict())
    assert latest.loc["signal", "all_models_top_k_frequency"] == 1.0

    profit_metadata = next(
        event.materialization.metadata
        for event in results[-1].get_asset_materialization_events()
        if event.asset_key == dg.AssetKey(["history", "profit_model"])
        and "ensemble" in event.materialization.metadata
    )
    assert str(profit_metadata["ensemble"].value).startswith("Ensemble: OOS rank IC ridge ")
    summary = next(
        event.materialization.metadata["summary (markdown)"].value
        for event in results[-1].get_asset_materialization_events()
        if event.asset_key == dg.AssetKey(["history", "persistence_dashboard"])
        and "summary (markdown)" in event.materialization.metadata
    )
    stored = latest_run(project.warehouse_path)
    line = ensemble_line(stored.ensemble, stored.agreement)
    assert f"{line}." in str(summary) and "signal" in line and "gbt" in line
    report = render_report(
        stored.latest, stored.summary, stored.alpha, 2, False, ensemble=(stored.ensemble, stored.agreement)
    )
    assert f"  {line}\n" in report
