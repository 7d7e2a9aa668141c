"""Numbers a quant can trust: what changed, spreads, data loss and coverage, correlated groups, and
300 features with any names through the whole pipeline."""

import re

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from persistence_pipeline.core.correlation import correlated_groups, spearman_matrix
from persistence_pipeline.core.importance import ImportanceParams, bootstrap_spread
from persistence_pipeline.core.model import fit_prior_ridge
from persistence_pipeline.resources import ModelSettings, TradeSource
from persistence_pipeline.storage.export import export_tables, read_export
from persistence_pipeline_tests.conftest import Project, check_evaluation

pytestmark = pytest.mark.e2e

ODD_NAMES = [
    'quote"d',
    "it's",
    "space name",
    "ünïcødé 数",
    "x; DROP TABLE trades; --",
    "Mixed Case",
    "tab\tname",
    "1starts_with_digit",
]


def test_spearman_matrix_matches_scipy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    X[:, 1] = X[:, 0] + rng.normal(scale=0.1, size=200)
    X[:, 4] = np.round(X[:, 4])  # ties
    np.testing.assert_allclose(spearman_matrix(X), scipy.stats.spearmanr(X).statistic, atol=1e-12)


def test_correlated_groups_by_hand():
    rng = np.random.default_rng(1)
    a, b, c = rng.normal(size=(3, 500))
    X = np.column_stack([c, a, b + rng.normal(scale=0.3, size=500), a + rng.normal(scale=0.2, size=500), b])
    names = ["c", "a", "b_twin", "a_twin", "b"]
    groups = correlated_groups(X, names, threshold=0.7).set_index("feature")
    assert groups.loc["a", "group_id"] == groups.loc["a_twin", "group_id"] == 1  # group of "a" sorts first
    assert groups.loc["b", "group_id"] == groups.loc["b_twin", "group_id"] == 2
    assert (
        groups.loc["c", "group_id"] == 3
        and groups.loc["c", "group_size"] == 1
        and np.isnan(groups.loc["c", "max_abs_corr"])
    )
    assert groups.loc["a", "max_abs_corr"] == pytest.approx(
        abs(scipy.stats.spearmanr(X[:, 1], X[:, 3]).statistic)
    )
    # the same partition as scipy's own clustering of scipy's correlation matrix
    distance = 1 - np.abs(scipy.stats.spearmanr(X).statistic)
    np.fill_diagonal(distance, 0)
    labels = fcluster(linkage(squareform(distance, checks=False), "average"), t=0.3, criterion="distance")
    assert len(set(zip(labels, groups.loc[names, "group_id"], strict=True))) == len(set(labels)) == 3


def test_bootstrap_coefficient_spread_matches_the_standard_error():
    rng = np.random.default_rng(3)
    n, sigma = 4000, 0.5
    X = rng.normal(size=(n, 3))
    y = 0.2 * X[:, 0] + rng.normal(scale=sigma, size=n)
    X[:, 1] *= 4.0  # a feature in other units: its raw standard error is a quarter
    model = fit_prior_ridge(X, y, alpha=1e-6)
    spread = bootstrap_spread(model, X, y, None, None, ImportanceParams(bootstrap_rounds=200, seed=0))
    standard_error = sigma / np.sqrt(n)  # OLS on standardized, independent features
    assert spread.coef_std is not None and spread.coef_raw_std is not None  # a ridge has coefficients
    np.testing.assert_allclose(spread.coef_std, standard_error, rtol=0.25)
    np.testing.assert_allclose(spread.coef_raw_std, standard_error / np.array([1, 4, 1]), rtol=0.25)
    shap_std = spread.shap_mean_abs_std
    assert (shap_std > 0).all() and shap_std[0] < 0.2 * np.abs(model.named_steps["ridge"].coef_[0])


def trade_log(names: list[str], days: pd.DatetimeIndex, per_day: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    entry = np.repeat(days, per_day) + pd.Timedelta(hours=14, minutes=30)
    n = len(entry)
    X = rng.normal(size=(n, len(names)))
    ret = 0.01 * X[:, 0] - 0.006 * X[:, 1] + rng.normal(scale=0.04, size=n)
    log = pd.DataFrame(
        {
            "trade_id": [f"T{i}" for i in range(n)],
            "symbol": "AAA",
            "entry_time": entry.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "exit_time": (entry + pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S%z"),
            "entry_price": 100.0,
            "exit_price": 100.0 * (1 + ret),
            "side": 1,
        }
    )
    return pd.concat([log, pd.DataFrame(X, columns=names)], axis=1)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    root = tmp_path_factory.mktemp("wide")
    names = ODD_NAMES + [f"feature_{i:03d}" for i in range(300 - len(ODD_NAMES))]
    (root / "log").mkdir()
    trade_log(names, pd.bdate_range("2022-01-03", "2022-06-30", tz="UTC"), per_day=40).to_parquet(
        root / "log" / "trades.parquet"
    )
    project = Project(
        root, TradeSource(kind="trade_log_dir", path=str(root / "log")), ModelSettings(bootstrap_rounds=5)
    )
    results = [  # two quarters, as months of the history code location (test_history.py)
        project.materialize("2022-01-01", "2022-03-01", monthly=True),
        project.materialize("2022-04-01", "2022-06-01", monthly=True),
    ]
    return project, names, results


def test_three_hundred_oddly_named_features_round_trip(wide):
    project, names, _ = wide
    stored = [
        c
        for c in project.table("trades").columns
        if c
        not in [
            "trade_id",
            "symbol",
            "strategy",
            "entry_time",
            "exit_time",
            "entry_price",
            "exit_price",
            "side",
            "return",
        ]
    ]
    assert stored == names
    history = project.table("feature_importance_history")
    assert history.groupby("run_key").size().tolist() == [300, 300]
    assert set(history["feature"]) == set(names)
    top = history[history["run_key"] == "2022-04-01..2022-06-30/ridge"].sort_values("rank")
    assert top["feature"].iloc[0] == ODD_NAMES[0]  # the planted strongest feature, named 'quote"d'


def test_views_show_the_top_n_and_say_how_many_are_hidden(wide):
    _, _, results = wide
    events = {
        e.asset_key.path[-1]: e.materialization.metadata  # the stage (history/ is the prefix)
        for e in results[1].get_asset_materialization_events()
    }
    assert "285 more features not shown." in events["persistence_dashboard"]["summary (markdown)"].value
    assert "285 more features not shown." in events["feature_importance"]["top_features"].value
    assert "290 more features not shown." in events["feature_alpha"]["top_alpha"].value
    assert re.fullmatch(
        r"\d+ periods of 7 days, IC within side x strategy cells",
        events["feature_alpha"]["evidence_series"].value,
    )


def test_what_changed_is_stored_and_the_top_flip_check_runs(wide):
    project, names, results = wide
    changes = project.table("importance_changes")
    second = changes[changes["run_key"] == "2022-04-01..2022-06-30/ridge"]
    assert set(second["previous_run_key"]) == {"2022-01-01..2022-03-31/ridge"} and len(second) == 300
    first = changes[changes["run_key"] == "2022-01-01..2022-03-31/ridge"]
    assert first["previous_run_key"].isna().all() and first["previous_rank"].isna().all()
    history = project.table("feature_importance_history").pivot(
        index="feature", columns="run_key", values="rank"
    )
    row = second.set_index("feature").loc["space name"]
    assert row["previous_rank"] == history.loc["space name", "2022-01-01..2022-03-31/ridge"]
    assert row["rank_shift"] == row["previous_rank"] - row["rank"]
    evaluation = check_evaluation(results[1], "top_features_unchanged")
    top3 = lambda run: set(history[run].nsmallest(3).index)  # noqa: E731
    flipped = top3("2022-01-01..2022-03-31/ridge") != top3("2022-04-01..2022-06-30/ridge")
    # a flip fails the check unless it is within the bootstrap spread, which the description says
    assert evaluation.passed is (not flipped or "within the bootstrap spread" in str(evaluation.description))
    assert flipped is not str(evaluation.description).startswith("top 3 unchanged")
    metadata = {
        e.asset_key.path[-1]: e.materialization.metadata  # the stage (history/ is the prefix)
        for e in results[1].get_asset_materialization_events()
    }
    assert metadata["feature_importance"]["what_changed"].value.startswith(
        "**What changed since `2022-01-01..2022-03-31/ridge`:**"
    )
    assert list(metadata["feature_importance"].keys())[0] == "what_changed"


def test_data_loss_and_coverage_are_recorded(wide):
    project, names, _ = wide
    loss = (
        project.table("data_loss")
        .query("run_key == '2022-04-01..2022-06-30/ridge'")
        .set_index("reason")["n_trades"]
    )
    metrics = project.table("run_metrics").set_index("run_key").loc["2022-04-01..2022-06-30/ridge"]
    in_range = len(pd.bdate_range("2022-04-01", "2022-06-30")) * 40
    everything = len(pd.bdate_range("2022-01-03", "2022-06-30")) * 40
    assert loss["trades entered in the range"] == metrics["n_trades"] == in_range
    assert (
        loss["dropped: label not realized by the range end"] == metrics["n_unrealized"] == 40
    )  # exits on 2022-07-01
    assert loss["trained on"] == metrics["n_train"] == in_range - 40
    assert loss["source trades outside the range"] == everything - in_range
    assert loss["dropped: invalid rows (these fail the run instead)"] == 0
    coverage = project.table("feature_coverage").query("run_key == '2022-04-01..2022-06-30/ridge'")
    assert len(coverage) == 300 and (coverage["coverage"] == 1.0).all() and coverage["used"].all()


def test_spreads_and_groups_are_stored_beside_importance(wide):
    project, _, _ = wide
    history = project.table("feature_importance_history")
    assert (history["coef_std"] > 0).all() and (history["shap_mean_abs_std"] > 0).all()
    assert (history["group_size"] == 1).all()  # independent features: no groups
    np.testing.assert_allclose(history["group_shap_mean_abs"], history["shap_mean_abs"])
    metrics = project.table("run_metrics")
    assert metrics["seed"].tolist() == [0, 0] and metrics["explainer"].str.startswith("closed-form").all()
    assert all(
        name in metrics["library_versions"].iloc[0]
        for name in ["scikit-learn", "shap", "numpy", "pandas", "dagster"]
    )
    assert '"ridge_alpha"' in metrics["model_params"].iloc[0]


def test_too_little_data_fails_with_the_counts(tmp_path):
    (tmp_path / "log").mkdir()
    trade_log(["a", "b"], pd.bdate_range("2022-01-03", "2022-01-14", tz="UTC"), per_day=4).to_csv(
        tmp_path / "log" / "t.csv", index=False
    )
    project = Project(
        tmp_path, TradeSource(kind="trade_log_dir", path=str(tmp_path / "log")), ModelSettings()
    )
    with pytest.raises(
        dg.Failure,
        match=r"column 'exit_time': only 36 of the 40 trades entered in the range exit by 2022-01-14; "
        r"50 are needed \(min_train_trades = 50, 5 per feature for 2 features\)",
    ):
        project.materialize("2022-01-01", "2022-01-14")
    assert not project.warehouse_path.exists()  # refused before anything was stored


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_oddly_named_features_survive_an_export(wide, tmp_path, fmt):
    """Quotes, spaces, dots and case in feature names: the exported trades load back with every
    column named and valued as stored."""
    project, names, _ = wide
    export_tables(project.warehouse_path, tmp_path, fmt, wait_seconds=5)
    loaded = read_export(tmp_path)["trades"]
    stored = project.table("trades", order_by="trade_id")
    assert [c for c in loaded.columns if c in names] == names
    pd.testing.assert_frame_equal(loaded, stored)
