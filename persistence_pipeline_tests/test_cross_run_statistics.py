"""Cross-run statistics against brute-force loops, scipy and identities from the literature."""

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from persistence_pipeline.core.alpha import feature_alpha
from persistence_pipeline.core.changes import describe_changes, importance_changes, top_set_change
from persistence_pipeline.core.drift import feature_drift, psi
from persistence_pipeline.core.leakage import leakage_suspects
from persistence_pipeline.core.priors import (
    CurriculumParams,
    PriorParams,
    curriculum_sample_weights,
    ema_priors,
    regime_weights,
    regimes,
    volatility_cuts,
)
from persistence_pipeline.core.stability import (
    feature_stability,
    jaccard_overlap,
    kendall_w,
    nogueira_stability,
    pairwise_spearman,
    rank_matrix,
    stability_summary,
)

pytestmark = pytest.mark.core


def random_rankings(m, n, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n)
    return np.array([scipy.stats.rankdata(base + rng.normal(scale=0.8, size=n)) for _ in range(m)])


def history_from(ranks, coef=None, ic=None, shap=None):
    m, n = ranks.shape
    rows = []
    for r in range(m):
        for f in range(n):
            rows.append(
                {
                    "run_key": f"run{r}",
                    "feature": f"f{f}",
                    "rank": int(ranks[r, f]),
                    "coef": None if coef is None else coef[r, f],
                    "ic": 0.0 if ic is None else ic[r, f],
                    "shap_mean_abs": float(n - ranks[r, f] + 1) if shap is None else shap[r, f],
                }
            )
    return pd.DataFrame(rows)


def test_kendall_w_brute_force_and_spearman_identity():
    ranks = random_rankings(6, 9)
    m, n = ranks.shape
    sums = [sum(ranks[r, j] for r in range(m)) for j in range(n)]
    mean_sum = m * (n + 1) / 2
    expected = 12 * sum((s - mean_sum) ** 2 for s in sums) / (m**2 * (n**3 - n))
    assert kendall_w(ranks) == pytest.approx(expected)
    spearman = [
        scipy.stats.spearmanr(ranks[a], ranks[b]).statistic for a, b in itertools.combinations(range(m), 2)
    ]
    np.testing.assert_allclose(pairwise_spearman(ranks), spearman)
    # for untied ranks, W = ((m - 1) * mean pairwise Spearman + 1) / m
    assert kendall_w(ranks) == pytest.approx(((m - 1) * np.mean(spearman) + 1) / m)


def test_kendall_w_extremes():
    assert kendall_w(np.tile(np.arange(1.0, 8.0), (4, 1))) == pytest.approx(1.0)
    assert kendall_w(np.array([np.arange(1.0, 7.0), np.arange(6.0, 0.0, -1)])) == pytest.approx(0.0)


def brute_nogueira(Z):
    """Definition 4 and the variance of Nogueira et al. (2018), written out with loops."""
    M, d = len(Z), len(Z[0])
    p = [sum(Z[i][f] for i in range(M)) / M for f in range(d)]
    s2 = [M / (M - 1) * p[f] * (1 - p[f]) for f in range(d)]
    k = [sum(Z[i]) for i in range(M)]
    kbar = sum(k) / M
    phi = 1 - (sum(s2) / d) / (kbar / d * (1 - kbar / d))
    phis = []
    for i in range(M):
        term = sum(Z[i][f] * p[f] for f in range(d)) / d - k[i] * kbar / d**2
        term += phi / 2 * (2 * k[i] * kbar / d**2 - k[i] / d - kbar / d + 1)
        phis.append(term / (kbar / d * (1 - kbar / d)))
    mean = sum(phis) / M
    variance = 4 / M**2 * sum((x - mean) ** 2 for x in phis)
    return phi, variance


def test_nogueira_matches_the_paper_and_pearson_identity():
    ranks = random_rankings(7, 12, seed=2)
    Z = (ranks <= 4).astype(int)
    phi, variance, low, high = nogueira_stability(Z)
    expected_phi, expected_variance = brute_nogueira(Z.tolist())
    assert phi == pytest.approx(expected_phi) and variance == pytest.approx(expected_variance)
    assert low == pytest.approx(phi - 1.959964 * np.sqrt(variance), abs=1e-6)
    assert high == pytest.approx(phi + 1.959964 * np.sqrt(variance), abs=1e-6)
    # with a constant number of selected features, phi is the mean pairwise Pearson correlation of the rows
    pearson = [np.corrcoef(Z[a], Z[b])[0, 1] for a, b in itertools.combinations(range(len(Z)), 2)]
    assert phi == pytest.approx(np.mean(pearson))


def test_rank_matrix_keeps_common_features_and_reranks():
    history = pd.DataFrame(
        {"run_key": ["a", "a", "a", "b", "b"], "feature": ["x", "y", "z", "x", "z"], "rank": [3, 1, 2, 1, 2]}
    )
    matrix = rank_matrix(history, ["a", "b"])
    assert list(matrix.columns) == ["x", "z"]
    assert matrix.loc["a"].tolist() == [2.0, 1.0] and matrix.loc["b"].tolist() == [1.0, 2.0]


def test_feature_stability_by_hand():
    ranks = np.array([[1, 2, 3], [2, 1, 3], [1, 3, 2]])
    coef = np.array([[0.5, -0.2, 0.1], [0.4, 0.3, 0.1], [0.6, -0.1, -0.1]])
    shap = np.array([[3.0, 2.0, 1.0], [2.0, 3.0, 1.0], [4.0, 1.0, 2.0]])
    table = feature_stability(history_from(ranks, coef=coef, shap=shap), k=1).set_index("feature")
    assert table.loc["f0", "rank_mean"] == pytest.approx(4 / 3)
    assert table.loc["f0", "rank_std"] == pytest.approx(np.std([1, 2, 1], ddof=1))
    assert table.loc["f0", "topk_frequency"] == pytest.approx(2 / 3)
    assert table.loc["f1", "sign_consistency"] == pytest.approx(2 / 3)
    assert table.loc["f2", "sign_consistency"] == pytest.approx(2 / 3)
    assert table.loc["f0", "importance_cv"] == pytest.approx(np.std([3, 2, 4], ddof=1) / 3)
    assert table.index[0] == "f0"


def test_one_run_gives_null_cross_run_figures():
    history = history_from(np.array([[1, 2, 3]]))
    summary = stability_summary(history, ["run0"], k=1, mean_trade_overlap=None)
    assert summary.n_runs == 1
    assert summary.kendall_w is None and summary.nogueira_phi is None and summary.latest_spearman is None
    assert "needs at least 2 runs" in summary.note
    table = feature_stability(history, k=1)
    assert table["rank_std"].isna().all() and table["sign_consistency"].isna().all()


def test_summary_values_and_overlap_note():
    ranks = random_rankings(5, 8, seed=4)
    history = history_from(ranks)
    summary = stability_summary(history, [f"run{r}" for r in range(5)], k=3, mean_trade_overlap=0.9)
    assert summary.kendall_w == pytest.approx(kendall_w(ranks))
    assert summary.latest_spearman == pytest.approx(scipy.stats.spearmanr(ranks[3], ranks[4]).statistic)
    low, phi, high = summary.nogueira_ci_low, summary.nogueira_phi, summary.nogueira_ci_high
    assert low is not None and phi is not None and high is not None
    assert low < phi < high
    assert "share 90% of their training trades" in summary.note
    two = stability_summary(history_from(ranks[:2]), ["run0", "run1"], k=3, mean_trade_overlap=0.0)
    assert two.nogueira_phi is not None and two.nogueira_ci_low is None and "at least 3 runs" in two.note


def test_jaccard_overlap():
    np.testing.assert_allclose(
        jaccard_overlap(np.array([10, 5]), np.array([10, 5]), np.array([5, 0])), [5 / 15, 0.0]
    )


def test_feature_alpha_against_scipy():
    rng = np.random.default_rng(9)
    m, n = 6, 4
    ic = np.column_stack(
        [
            0.05 + rng.normal(scale=0.01, size=m),
            np.linspace(0.10, 0.0, m) + rng.normal(scale=0.002, size=m),
            rng.normal(scale=0.02, size=m),
            -0.03 + rng.normal(scale=0.01, size=m),
        ]
    )
    shap = rng.uniform(0.5, 2.0, size=(m, n))
    ranks = np.array([scipy.stats.rankdata(-row) for row in shap])
    history = history_from(ranks, ic=ic, shap=shap)
    run_order = [f"run{r}" for r in range(m)]
    performance = pd.Series(rng.normal(size=m), index=run_order)
    topk = pd.Series({"f0": 1.0, "f1": 0.5, "f2": 0.0, "f3": 0.5})
    table = feature_alpha(history, run_order, performance, topk).set_index("feature")
    p_values = [scipy.stats.ttest_1samp(ic[:, j], 0.0).pvalue for j in range(n)]
    q_values = brute_benjamini_hochberg(p_values)
    for j in range(n):
        row = table.loc[f"f{j}"]
        test = scipy.stats.ttest_1samp(ic[:, j], 0.0)
        assert row["ic_mean"] == pytest.approx(ic[:, j].mean())
        assert row["ic_t_stat"] == pytest.approx(test.statistic)
        assert row["ic_p_value"] == pytest.approx(test.pvalue)
        assert row["significance"] == pytest.approx(1 - q_values[j])
        assert row["icir"] == pytest.approx(ic[:, j].mean() / ic[:, j].std(ddof=1))
        share = shap[:, j] / shap.sum(axis=1)
        assert row["importance_share"] == pytest.approx(share.mean())
        aligned = ic[:, j] * np.sign(ic[:, j].mean())
        slope, intercept = np.polyfit(np.arange(m), aligned, 1)
        assert row["ic_slope"] == pytest.approx(slope)
        assert row["perf_corr"] == pytest.approx(
            scipy.stats.spearmanr(share, performance.to_numpy()).statistic
        )
        consistency = np.mean(np.sign(ic[:, j]) == np.sign(ic[:, j].mean()))
        rel = share.mean() / max((shap[:, i] / shap.sum(axis=1)).mean() for i in range(n))
        fitted_latest = np.clip((intercept + slope * (m - 1)) / aligned.mean(), 0, 1)
        persistence = fitted_latest if row["decaying"] else 1.0
        assert row["persistence"] == pytest.approx(persistence)
        assert row["alpha_score"] == pytest.approx(
            (1 - q_values[j]) * persistence * (consistency + topk[f"f{j}"] + rel) / 3
        )
        assert 0 <= row["alpha_score"] <= 1
    slope, intercept = np.polyfit(np.arange(m), ic[:, 1], 1)
    assert table.loc["f1", "half_life_runs"] == pytest.approx(intercept / (2 * -slope))
    assert bool(table.loc["f1", "decaying"]) and not bool(table.loc["f0", "decaying"])
    assert table.loc["f1", "persistence"] < 0.2 and table.loc["f0", "persistence"] == 1.0
    assert table.index[0] == "f0"  # persistent, significant, stable


def brute_benjamini_hochberg(p_values):
    """q_i = min over j with p_j >= p_i of p_j * n / rank_j (capped at 1)."""
    n = len(p_values)
    order = sorted(range(n), key=lambda i: p_values[i])
    rank = {i: r + 1 for r, i in enumerate(order)}
    return [
        min(1.0, min(p_values[j] * n / rank[j] for j in range(n) if p_values[j] >= p_values[i]))
        for i in range(n)
    ]


def test_overlapping_runs_count_as_fewer_independent_runs():
    rng = np.random.default_rng(2)
    m = 10
    ic = np.column_stack([0.03 + rng.normal(scale=0.01, size=m), rng.normal(scale=0.01, size=m)])
    history = history_from(np.tile([1, 2], (m, 1)), ic=ic)
    runs = [f"run{r}" for r in range(m)]
    independent = feature_alpha(
        history, runs, pd.Series(0.0, index=runs), pd.Series({"f0": 1.0, "f1": 0.0}), overlap=0.0
    )
    overlapping = feature_alpha(
        history, runs, pd.Series(0.0, index=runs), pd.Series({"f0": 1.0, "f1": 0.0}), overlap=0.9
    )
    a, b = independent.set_index("feature").loc["f0"], overlapping.set_index("feature").loc["f0"]
    assert b["n_effective_runs"] == pytest.approx(1 + 9 * 0.1)
    assert b["ic_t_stat"] == pytest.approx(a["ic_t_stat"] * np.sqrt(1.9 / 10))
    assert b["ic_p_value"] == pytest.approx(2 * scipy.stats.t.sf(abs(b["ic_t_stat"]), df=1.0))
    assert b["significance"] < a["significance"]


def test_nan_ic_runs_are_skipped_and_absent_runs_count_as_zero():
    ranks = np.array([[1, 2], [1, 2], [1, 2]])
    ic = np.array([[0.05, np.nan], [0.06, 0.01], [0.04, 0.02]])
    history = history_from(ranks, ic=ic)
    history = history[~((history["run_key"] == "run0") & (history["feature"] == "f1"))]  # f1 absent from run0
    runs = ["run0", "run1", "run2"]
    table = feature_alpha(
        history, runs, pd.Series(0.0, index=runs), pd.Series({"f0": 1.0, "f1": 0.0})
    ).set_index("feature")
    assert table.loc["f0", "n_runs"] == 3 and table.loc["f1", "n_runs"] == 2
    assert table.loc["f1", "ic_mean"] == pytest.approx(0.015)
    stability = feature_stability(history, k=1).set_index("feature")
    assert stability.loc["f0", "topk_frequency"] == 1.0
    shares = history.assign(total=history.groupby("run_key")["shap_mean_abs"].transform("sum"))
    f1 = shares[shares["feature"] == "f1"]
    assert table.loc["f1", "importance_share"] == pytest.approx((f1["shap_mean_abs"] / f1["total"]).sum() / 3)


def test_feature_alpha_with_one_run_is_null():
    history = history_from(np.array([[1, 2]]), ic=np.array([[0.1, -0.1]]))
    table = feature_alpha(history, ["run0"], pd.Series({"run0": 0.1}), pd.Series({"f0": 1.0, "f1": 0.0}))
    assert (
        table["alpha_score"].isna().all()
        and table["ic_t_stat"].isna().all()
        and table["ic_slope"].isna().all()
    )
    assert table["ic_mean"].notna().all()


def test_ema_priors_brute_force():
    coef = pd.DataFrame({"a": [1.0, 2.0, 4.0], "b": [np.nan, 1.0, np.nan]}, index=["r0", "r1", "r2"])
    priors = ema_priors(coef, PriorParams(decay=0.5, strength_per_run=10.0)).set_index("feature")
    assert priors.loc["a", "prior_coef"] == pytest.approx(0.5 * (0.5 * 1.0 + 0.5 * 2.0) + 0.5 * 4.0)
    assert priors.loc["a", "prior_strength"] == pytest.approx(10 * (1 + 0.5 + 0.25))
    assert priors.loc["b", "prior_coef"] == 1.0 and priors.loc["b", "n_runs"] == 1
    assert priors.loc["b", "prior_strength"] == pytest.approx(10.0)


def test_regimes_and_curriculum_weights_by_hand():
    volatility = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    cuts = volatility_cuts(volatility)
    assert cuts == pytest.approx((np.quantile(volatility, 1 / 3), np.quantile(volatility, 2 / 3)))
    labels = regimes(volatility, np.array([1, -1, 1, -1, 1, -1]), cuts)
    assert labels.tolist() == [
        "vol_low/trend_up",
        "vol_low/trend_down",
        "vol_mid/trend_up",
        "vol_mid/trend_down",
        "vol_high/trend_up",
        "vol_high/trend_down",
    ]
    regime = np.array(["vol_low/trend_up"] * 4 + ["vol_high/trend_up"] * 4)
    realized = np.array([1.0, -1.0, 1.0, -1.0, 2.0, -2.0, 2.0, -2.0])
    prediction = np.array([1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    weights = regime_weights(
        regime, prediction, realized, CurriculumParams(min_weight=0.5, max_weight=2.0)
    ).set_index("regime")
    low_error = np.mean((realized[:4] - prediction[:4]) ** 2) / np.var(realized[:4])  # 0.5
    overall = np.mean((realized - prediction) ** 2) / np.var(realized)
    assert weights.loc["vol_low/trend_up", "oos_error"] == pytest.approx(low_error)
    assert weights.loc["vol_low/trend_up", "weight"] == pytest.approx(max(0.5, low_error / overall))
    assert weights.loc["vol_high/trend_up", "weight"] == pytest.approx(min(2.0, 1.0 / overall))
    assert (
        weights.loc["vol_mid/trend_down", "weight"] == 1.0 and weights.loc["vol_mid/trend_down", "n_oos"] == 0
    )
    stored = weights.reset_index().assign(
        volatility_feature="vol", trend_feature="trend", volatility_cut_low=0.25, volatility_cut_high=0.45
    )
    trades = pd.DataFrame({"vol": [0.1, 0.9, 0.3], "trend": [1.0, 1.0, -1.0]})
    np.testing.assert_allclose(
        curriculum_sample_weights(trades, stored),
        [weights.loc["vol_low/trend_up", "weight"], weights.loc["vol_high/trend_up", "weight"], 1.0],
    )


def test_psi_brute_force():
    rng = np.random.default_rng(1)
    expected, actual = rng.normal(size=500), rng.normal(0.5, 1.2, size=400)
    edges = np.quantile(expected, np.linspace(0, 1, 11))[1:-1]
    total = 0.0
    for b in range(10):
        low = -np.inf if b == 0 else edges[b - 1]
        high = np.inf if b == 9 else edges[b]
        e = max(float(np.mean((expected >= low) & (expected < high))), 1e-4)
        a = max(float(np.mean((actual >= low) & (actual < high))), 1e-4)
        total += (a - e) * np.log(a / e)
    assert psi(expected, actual) == pytest.approx(total)
    assert psi(expected, expected) == pytest.approx(0.0)
    drift = feature_drift(
        pd.DataFrame({"x": expected[:400], "y": expected[:400]}),
        pd.DataFrame({"x": actual, "y": expected[100:]}),
        ["x", "y"],
    )
    assert drift["feature"].tolist() == ["x", "y"] and drift["psi"].iloc[0] > 0.1


def test_importance_changes_by_hand():
    previous = pd.DataFrame(
        {"feature": ["a", "b", "c", "gone"], "rank": [1, 2, 3, 4], "shap_mean_abs": [4.0, 3.0, 2.0, 1.0]}
    )
    current = pd.DataFrame(
        {"feature": ["a", "b", "c", "new"], "rank": [3, 2, 1, 4], "shap_mean_abs": [2.0, 3.0, 5.0, 0.5]}
    )
    changes = importance_changes(previous, current, k=1).set_index("feature")
    assert changes.loc["a", ["previous_rank", "rank", "rank_shift"]].tolist() == [1, 3, -2]
    assert changes.loc["c", "rank_shift"] == 2 and changes.loc["c", "shap_change"] == pytest.approx(3.0)
    assert bool(changes.loc["c", "entered_top_k"]) and bool(changes.loc["a", "left_top_k"])
    assert not changes.loc[["b", "new", "gone"], "entered_top_k"].any()
    assert pd.isna(changes.loc["new", "previous_rank"]) and pd.isna(changes.loc["gone", "rank"])
    assert list(changes.index[:2]) == ["gone", "new"]  # no rank on one side: listed first
    flat = importance_changes(previous, current, k=1)
    assert top_set_change(flat, 2) == (["c"], ["a"])
    text = describe_changes(flat, "prev/ridge", 1)
    assert "entered the top 1: c; left it: a" in text and "a 1→3" in text and "c +3" in text
    assert "first run" in describe_changes(flat.iloc[0:0], None, 1)


def test_psi_ignores_missing_values():
    values = np.arange(100.0)
    assert psi(values, np.append(values, [np.nan] * 30)) == pytest.approx(0.0)


def test_leakage_by_hand():
    suspects = leakage_suspects(pd.DataFrame({"feature": ["a", "b", "c"], "ic": [0.05, -0.8, 0.4]}), 0.3)
    assert suspects["feature"].tolist() == ["b", "c"]
