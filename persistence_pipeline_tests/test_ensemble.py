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
    ensemble_metrics,
    ensemble_prediction,
    ensemble_view,
    rank_agreement,
    rank_spearman,
    with_ensemble_view,
)
from persistence_pipeline.core.importance import ImportanceParams
from persistence_pipeline.core.model import ModelParams
from persistence_pipeline.core.report import render_report
from persistence_pipeline.core.simulation import (
    SimulatedMarket,
    ensemble_windows,
    simulated_trades,
    trade_log,
)
from persistence_pipeline.resources import CheckpointStore, ModelSettings, TradeSource
from persistence_pipeline.storage.report import latest_run
from persistence_pipeline_tests.conftest import Project


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
def test_the_average_and_its_metrics_against_scipy():
    rng = np.random.default_rng(0)
    realized = rng.normal(size=300)
    predictions = {"ridge": realized * 0.2 + rng.normal(size=300), "gbt": rng.normal(size=300)}
    average = ensemble_prediction(predictions)
    assert average == pytest.approx((predictions["ridge"] + predictions["gbt"]) / 2)
    metrics = ensemble_metrics(predictions, realized).set_index("model_kind")
    assert metrics.index.tolist() == ["ridge", "gbt", ENSEMBLE]
    assert metrics["weight"].tolist()[:2] == [0.5, 0.5] and np.isnan(metrics.loc[ENSEMBLE, "weight"])
    for kind, prediction in [*predictions.items(), (ENSEMBLE, average)]:
        assert metrics.loc[kind, "oos_rank_ic"] == pytest.approx(stats.spearmanr(prediction, realized)[0])
        taken = prediction > 0
        assert metrics.loc[kind, "oos_hit_rate"] == pytest.approx((realized[taken] > 0).mean())
        assert metrics.loc[kind, "n_oos"] == 300


@pytest.mark.core
def test_the_agreement_by_hand():
    ranks = pd.DataFrame(
        {
            "model_kind": ["ridge"] * 5 + ["gbt"] * 5,
            "feature": list("abcde") * 2,
            "rank": pd.array([1, 2, 3, 4, pd.NA, 2, 4, 1, 3, pd.NA], dtype="Int64"),  # e: quarantined
        }
    )
    table = rank_agreement(ranks, top_k=2).set_index("feature")
    assert table.index.tolist() == ["a", "c", "b", "d", "e"]  # by worst rank (2 3 4 4), then best
    assert table["rank_gap"].tolist()[:4] == [1, 2, 2, 1] and pd.isna(table.loc["e", "rank_gap"])
    assert table.index[table["in_all_top_k"]].tolist() == ["a"]  # b: 2 and 4; c: 3 and 1
    assert table.index[table["in_any_top_k"]].tolist() == ["a", "c", "b"]
    assert table.loc["e", "n_models"] == 0 and table.loc["a", "n_models"] == 2
    # Spearman over the four ranked features: ridge 1 2 3 4 (a b c d) against gbt 2 4 1 3
    expected = stats.spearmanr([1, 2, 3, 4], [2, 4, 1, 3])[0]
    assert table["rank_spearman"].unique().tolist() == pytest.approx([expected])


@pytest.mark.core
def test_rank_spearman_against_scipy_with_three_members_and_unranked_features():
    rng = np.random.default_rng(1)
    features = [f"f{i}" for i in range(30)]
    wide = pd.DataFrame(
        {kind: rng.permutation(30) + 1.0 for kind in ["ridge", "gbt", "other"]}, index=features
    )
    wide.iloc[[3, 7], :] = np.nan  # quarantined: no member ranks them
    kept = wide.dropna()
    pairs = [stats.spearmanr(kept[a], kept[b])[0] for a, b in itertools.combinations(kept.columns, 2)]
    assert rank_spearman(wide) == pytest.approx(np.mean(pairs))
    assert np.isnan(rank_spearman(wide.iloc[:2]))


@pytest.mark.core
def test_the_cross_run_view_by_hand():
    agreement = pd.DataFrame(
        {
            "run_key": ["r1", "r1", "r2", "r2", "r3"],
            "feature": ["a", "b", "a", "b", "a"],
            "in_all_top_k": [True, False, True, True, False],
            "rank_gap": pd.array([0, 3, 1, pd.NA, 4], dtype="Int64"),  # b unranked in r2
        }
    )
    view = ensemble_view(agreement).set_index("feature")
    assert view.loc["a"].tolist() == pytest.approx([3, 2 / 3, 5 / 3])
    assert view.loc["b"].tolist() == pytest.approx([1, 0.0, 3.0])
    alpha = with_ensemble_view(
        pd.DataFrame({"feature": ["a", "b", "c"], "alpha_score": [0.5, 0.2, 0.1]}), agreement
    )
    assert alpha["n_ensemble_runs"].tolist() == [3, 1, 0] and np.isnan(
        alpha["all_models_top_k_frequency"].iloc[2]
    )
    alone = with_ensemble_view(alpha[["feature", "alpha_score"]], agreement.iloc[0:0])
    assert alone["n_ensemble_runs"].tolist() == [0, 0, 0]


@pytest.mark.core
def test_the_summary_line():
    metrics = pd.DataFrame({"model_kind": ["ridge", "gbt", ENSEMBLE], "oos_rank_ic": [0.05, 0.02, 0.04]})
    agreement = pd.DataFrame(
        {"feature": ["a", "b"], "in_all_top_k": [True, False], "rank_spearman": [0.61, 0.61]}
    )
    assert ensemble_line(metrics, agreement) == (
        "Ensemble: OOS rank IC ridge +0.0500, gbt +0.0200, ensemble +0.0400; importance ranks agree "
        "with Spearman +0.61; in every model's top k: a"
    )
    assert ensemble_line(metrics.iloc[0:0], agreement.iloc[0:0]) == (
        "Ensemble: one model (model_settings.ensemble is empty)"
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
def test_on_noise_agreement_stays_near_chance_and_a_planted_feature_is_in_every_top_k(windows):
    """A year of simulated trades, as 6 two-month runs (non-overlapping) or 9 four-month runs moved by
    a month (overlapping). Without signal, a noise feature is in both the ridge's and the trees' top 5
    of 20 in about (5/20)^2 = 6% of runs if the models ranked independently and 25% if they always
    agreed: both fit the same in-sample noise, so it lands in between (the benchmark measures it),
    and agreement alone is no evidence of alpha. A planted feature is in both top 5 in every run."""
    null = SimulatedMarket(start="2021-01-01", end="2021-12-31", per_day=20, n_symbols=30, n_noise=N_NOISE)
    agreement, _ = ensemble_windows(null, 3, windows, ["ridge", "gbt"], TOP_K, CHEAP, SHAP)
    view = ensemble_view(agreement)
    chance_independent, chance_same = (TOP_K / N_NOISE) ** 2, TOP_K / N_NOISE
    assert chance_independent < view["all_models_top_k_frequency"].mean() < chance_same
    assert view["all_models_top_k_frequency"].max() < 1.0
    planted = SimulatedMarket(
        start="2021-01-01",
        end="2021-12-31",
        per_day=20,
        n_symbols=30,
        n_noise=N_NOISE,
        planted={"signal": (0.2, 0.2)},
    )
    agreement, metrics = ensemble_windows(planted, 3, windows, ["ridge", "gbt"], TOP_K, CHEAP, SHAP)
    view = ensemble_view(agreement).set_index("feature")
    assert view.loc["signal", "all_models_top_k_frequency"] == 1.0
    assert view.loc["signal", "n_ensemble_runs"] == len(windows)
    mean_ic = metrics.groupby("model_kind")["oos_rank_ic"].mean()
    assert mean_ic["ridge"] > 0.1 and mean_ic[ENSEMBLE] > 0.1  # a linear signal: the ridge finds it


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
    assert members.index.equals(oos.index)
    assert members["ridge"].to_numpy() == pytest.approx(oos["prediction"].to_numpy(), abs=1e-15)
    assert members[ENSEMBLE].to_numpy() == pytest.approx((members["ridge"] + members["gbt"]).to_numpy() / 2)
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
    assert list(checkpoint["members"]) == ["gbt"] and len(checkpoint["members"]["gbt"]["fold_models"]) == len(
        checkpoint["fold_models"]
    )

    importance = project.table("ensemble_importance")
    history = project.table("feature_importance_history").set_index(["run_key", "feature"])
    ridge = importance[importance["model_kind"] == "ridge"].set_index(["run_key", "feature"])
    assert ridge["rank"].equals(history.loc[ridge.index, "rank"])
    alone_history = alone.table("feature_importance_history").set_index("feature")
    assert history.loc[first, "shap_mean_abs"].sort_index().to_numpy() == pytest.approx(
        alone_history["shap_mean_abs"].sort_index().to_numpy()
    )
    agreement = project.table("model_agreement")
    for run_key, rows in agreement.groupby("run_key"):
        wide = importance[importance["run_key"] == run_key].pivot(
            index="feature", columns="model_kind", values="rank"
        )
        assert rows["rank_spearman"].iloc[0] == pytest.approx(stats.spearmanr(wide["ridge"], wide["gbt"])[0])
        by_feature = rows.set_index("feature")
        assert by_feature["in_all_top_k"].to_dict() == ((wide <= 5).all(axis=1)).to_dict()
        assert by_feature.loc["signal", "in_all_top_k"]  # both models find the planted feature

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
