"""Cross-run statistics against brute-force loops, scipy and identities from the literature."""

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import statsmodels.stats.proportion
from statsmodels.stats.meta_analysis import combine_effects

from persistence_pipeline.core.changes import describe_changes, rank_changes, top_set_change
from persistence_pipeline.core.drift import feature_drift, psi
from persistence_pipeline.core.importance import ImportanceParams
from persistence_pipeline.core.leakage import implausible_performance
from persistence_pipeline.core.priors import (
    CurriculumParams,
    PriorParams,
    curriculum_sample_weights,
    empirical_bayes_priors,
    regime_weights,
    regimes,
    volatility_cuts,
)
from persistence_pipeline.core.stability import (
    MIN_RUNS_FOR_INTERVAL,
    effective_runs,
    jaccard_overlap,
    kendall_w,
    nogueira_stability,
    non_overlapping_runs,
    pairwise_spearman,
    per_feature_stability,
    rank_matrix,
    summarize_stability,
)
from persistence_pipeline_tests.simulation import SimulatedMarket, warm_against_cold

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
    half = scipy.stats.t.ppf(0.975, 6) * np.sqrt(variance)  # Student's t, M - 1 = 6 df
    assert low == pytest.approx(max(phi - half, -1.0)) and high == pytest.approx(min(phi + half, 1.0))
    # with a constant number of selected features, phi is the mean pairwise Pearson correlation of the rows
    pearson = [np.corrcoef(Z[a], Z[b])[0, 1] for a, b in itertools.combinations(range(len(Z)), 2)]
    assert phi == pytest.approx(np.mean(pearson))


def test_rank_matrix_keeps_common_features_and_reranks():
    history = pd.DataFrame(
        {
            "run_key": ["a", "a", "a", "b", "b"],
            "feature": ["x", "y", "z", "x", "z"],
            "rank": [3, 1, 2, 1, 2],
            "shap_mean_abs": [1.0, 3.0, 2.0, 2.0, 1.0],
        }
    )
    matrix = rank_matrix(history, ["a", "b"])
    assert list(matrix.columns) == ["x", "z"]
    assert matrix.loc["a"].tolist() == [2.0, 1.0] and matrix.loc["b"].tolist() == [1.0, 2.0]


def test_tied_importances_share_their_average_rank_and_w_is_tie_corrected():
    """A tree gives every feature it never splits on a mean |SHAP| of exactly 0. Broken by name (the
    stored display rank) those ties get identical ranks in every run and inflate Kendall's W; with
    average ranks and the tie correction, W equals Friedman's tie-corrected chi-square / (m (n - 1))."""
    rng = np.random.default_rng(8)
    m, n = 6, 12
    shap = np.abs(rng.normal(size=(m, n)))
    shap[:, 6:] = 0.0  # six features no tree splits on
    for row in shap:  # and in each run, two more it happened not to use
        row[rng.choice(6, 2, replace=False)] = 0.0
    by_name = np.array([scipy.stats.rankdata(-row, method="ordinal") for row in shap])
    history = history_from(by_name, shap=shap)
    summary = summarize_stability(history, quarters(m), k=3, mean_trade_overlap=0.0)
    friedman = scipy.stats.friedmanchisquare(*[shap[:, j] for j in range(n)]).statistic / (m * (n - 1))
    assert summary.kendall_w == pytest.approx(friedman)
    assert summary.kendall_w is not None and kendall_w(by_name) > summary.kendall_w + 0.2  # 0.89 against 0.57
    ranks = rank_matrix(history, [f"run{r}" for r in range(m)])
    assert (ranks.loc[:, [f"f{j}" for j in range(6, 12)]] == 8.5).all().all()  # 8 tied: mean of 5..12
    table = per_feature_stability(history, k=3).set_index("feature")
    assert table.loc["f8", "rank_mean"] == 8.5


def test_feature_stability_by_hand():
    ranks = np.array([[1, 2, 3], [2, 1, 3], [1, 3, 2]])
    coef = np.array([[0.5, -0.2, 0.1], [0.4, 0.3, 0.1], [0.6, -0.1, -0.1]])
    shap = np.array([[3.0, 2.0, 1.0], [2.0, 3.0, 1.0], [4.0, 1.0, 2.0]])
    table = per_feature_stability(history_from(ranks, coef=coef, shap=shap), k=1).set_index("feature")
    assert table.loc["f0", "rank_mean"] == pytest.approx(4 / 3)
    assert table.loc["f0", "rank_std"] == pytest.approx(np.std([1, 2, 1], ddof=1))
    assert table.loc["f0", "topk_frequency"] == pytest.approx(2 / 3)
    assert table.loc["f1", "sign_consistency"] == pytest.approx(2 / 3)
    assert table.loc["f2", "sign_consistency"] == pytest.approx(2 / 3)
    assert table.loc["f0", "importance_cv"] == pytest.approx(np.std([3, 2, 4], ddof=1) / 3)
    assert table.index[0] == "f0"


def ranges_of(starts, ends):
    return pd.DataFrame(
        {
            "run_key": [f"run{r}" for r in range(len(starts))],
            "range_start": pd.to_datetime(starts).date,
            "range_end": pd.to_datetime(ends).date,
        }
    )


def quarters(m):
    starts = pd.date_range("2021-01-01", periods=m, freq="QS")
    return ranges_of(starts, starts + pd.offsets.QuarterEnd(0))


def test_one_run_gives_null_cross_run_figures():
    history = history_from(np.array([[1, 2, 3]]))
    summary = summarize_stability(history, quarters(1), k=1, mean_trade_overlap=None)
    assert summary.n_runs == 1 and summary.n_independent_runs == 1
    assert summary.kendall_w is None and summary.nogueira_phi is None and summary.latest_spearman is None
    assert "needs at least 2 runs whose windows do not overlap" in summary.note
    table = per_feature_stability(history, k=1)
    assert table["rank_std"].isna().all() and table["sign_consistency"].isna().all()


def test_summary_values_over_non_overlapping_runs():
    ranks = random_rankings(6, 8, seed=4)
    history = history_from(ranks)
    summary = summarize_stability(history, quarters(6), k=3, mean_trade_overlap=0.0)
    assert summary.n_runs == summary.n_independent_runs == 6
    assert summary.kendall_w == pytest.approx(kendall_w(ranks))
    assert summary.latest_spearman == pytest.approx(scipy.stats.spearmanr(ranks[4], ranks[5]).statistic)
    low, phi, high = summary.nogueira_ci_low, summary.nogueira_phi, summary.nogueira_ci_high
    assert low is not None and phi is not None and high is not None
    assert -1 <= low < phi < high <= 1
    few = summarize_stability(history_from(ranks[:4]), quarters(4), k=3, mean_trade_overlap=0.0)
    assert few.nogueira_phi is not None and few.nogueira_ci_low is None
    assert f"needs {MIN_RUNS_FOR_INTERVAL} non-overlapping runs" in few.note


def test_nightly_windows_are_compared_only_where_they_do_not_overlap():
    """30 nightly 90-day windows: one independent ranking, so no stability figure; quarterly
    windows among nightly ones: only those are compared."""
    ends = pd.date_range("2021-04-01", periods=30, freq="D")
    nightly = ranges_of(ends - pd.Timedelta(days=89), ends)
    assert non_overlapping_runs(nightly) == ["run29"]
    assert effective_runs(nightly) == pytest.approx(119 / 90)
    history = history_from(random_rankings(30, 6, seed=1))
    summary = summarize_stability(history, nightly, k=2, mean_trade_overlap=0.97, n_effective_runs=119 / 90)
    assert summary.n_runs == 30 and summary.n_independent_runs == 1 and summary.kendall_w is None
    assert "share 97% of their training trades, so only 1 of the 30 runs are compared" in summary.note
    mixed = ranges_of(
        ["2021-01-01", "2021-03-01", "2021-04-01", "2021-06-15", "2021-07-01"],
        ["2021-03-31", "2021-05-30", "2021-06-30", "2021-09-12", "2021-09-30"],
    )
    # newest first: run4 (Jul-Sep); run3 overlaps it; run2 (Apr-Jun) ends before Jul; run1 overlaps run2; run0
    assert non_overlapping_runs(mixed) == ["run0", "run2", "run4"]
    ranks = random_rankings(5, 6, seed=3)
    summary = summarize_stability(history_from(ranks), mixed, k=2, mean_trade_overlap=0.3)
    assert summary.n_independent_runs == 3
    assert summary.kendall_w == pytest.approx(kendall_w(ranks[[0, 2, 4]]))


def test_jaccard_overlap():
    np.testing.assert_allclose(
        jaccard_overlap(np.array([10, 5]), np.array([10, 5]), np.array([5, 0])), [5 / 15, 0.0]
    )


def test_empirical_bayes_priors_against_statsmodels_meta_analysis():
    coef, se = [1.0, 2.0, 4.0], [0.5**0.5, 1.0, 0.5]
    history = pd.DataFrame(
        {
            "run_key": ["r0", "r1", "r2", "r1", "r2", "r2", "r1", "r2"],
            "feature": ["a", "a", "a", "b", "b", "c", "d", "d"],
            "own_coef_raw": [*coef, 1.0, 1.05, np.nan, 0.1, -0.05],
            "own_coef_raw_std": [*se, 0.1, 0.1, 0.3, 0.2, 0.2],
        }
    )
    priors = empirical_bayes_priors(history, PriorParams(decay=0.5, min_z=2.0)).set_index("feature")
    assert priors.index.tolist() == ["a", "b", "d"]  # c has no usable coefficient
    # informative: |mean| at least min_z (2) prior sds from 0; d's runs disagree on the sign
    expected = (priors["prior_coef_raw"].abs() >= 2 * priors["prior_sd_raw"]).tolist()
    assert priors["informative"].tolist() == expected == [True, True, False]
    meta = combine_effects(np.array(coef), np.array(se) ** 2, method_re="dl")
    # with (next to) no discount the mean is the fixed-effect (precision-weighted) mean and the prior variance
    # tau^2 + its variance; the between-run spread is DerSimonian-Laird's
    undiscounted = empirical_bayes_priors(history, PriorParams(decay=1 - 1e-12)).set_index("feature")
    assert undiscounted.loc["a", "prior_coef_raw"] == pytest.approx(meta.mean_effect_fe)
    assert undiscounted.loc["a", "tau_between"] ** 2 == pytest.approx(meta.tau2)
    assert undiscounted.loc["a", "prior_sd_raw"] ** 2 == pytest.approx(meta.tau2 + meta.var_eff_w_fe)
    # with decay 0.5 the older runs' precisions are discounted by 0.25 and 0.5
    w = np.array([0.25, 0.5, 1.0]) / np.array(se) ** 2
    assert priors.loc["a", "prior_coef_raw"] == pytest.approx(w @ coef / w.sum())
    assert priors.loc["a", "prior_sd_raw"] ** 2 == pytest.approx(meta.tau2 + 1 / w.sum())
    assert priors.loc["a", "n_runs"] == 3
    # two agreeing runs: no between-run spread, the prior is as precise as the discounted data
    assert priors.loc["b", "tau_between"] == 0.0
    assert priors.loc["b", "prior_sd_raw"] == pytest.approx((1.5 / 0.01) ** -0.5)
    # a feature seen in r0 and r1 of the pooled runs r0..r2 (absent from the newest) is aged by its
    # place among ALL pooled runs: its precisions are discounted by 0.25 and 0.5, not 0.5 and 1
    aged = pd.DataFrame(
        {
            "run_key": ["r0", "r1", "r2"],
            "feature": ["b", "b", "a"],
            "own_coef_raw": [1.0, 1.05, 1.0],
            "own_coef_raw_std": [0.1, 0.1, 1.0],
        }
    )
    older = empirical_bayes_priors(aged, PriorParams(decay=0.5)).set_index("feature")
    assert older.loc["b", "prior_sd_raw"] == pytest.approx((0.25 / 0.01 + 0.5 / 0.01) ** -0.5)


@pytest.mark.parametrize("decay", [0.0, 1.5, -0.1])
def test_a_prior_decay_outside_zero_one_is_refused(decay):
    from persistence_pipeline.resources import AnalysisSettings

    with pytest.raises(ValueError, match=r"prior_decay must be in \(0, 1\]"):
        PriorParams(decay=decay)
    with pytest.raises(ValueError, match="prior_decay"):
        AnalysisSettings(prior_decay=decay)


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
        regime, prediction, realized, CurriculumParams(min_weight=0.5, max_weight=2.0, shrinkage_trades=12.0)
    ).set_index("regime")
    low_error = np.mean((realized[:4] - prediction[:4]) ** 2) / np.var(realized[:4])  # 0.5
    overall = np.mean((realized - prediction) ** 2) / np.var(realized)
    shrink = 4 / (4 + 12.0)  # four OOS trades against a shrinkage of twelve
    assert weights.loc["vol_low/trend_up", "oos_error"] == pytest.approx(low_error)
    assert weights.loc["vol_low/trend_up", "weight"] == pytest.approx(
        1 + (max(0.5, low_error / overall) - 1) * shrink
    )
    assert weights.loc["vol_high/trend_up", "weight"] == pytest.approx(
        1 + (min(2.0, 1.0 / overall) - 1) * shrink
    )
    unshrunk = regime_weights(regime, prediction, realized, CurriculumParams(shrinkage_trades=0.0))
    assert unshrunk.set_index("regime").loc["vol_high/trend_up", "weight"] == pytest.approx(
        min(2.0, 1.0 / overall)
    )
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
    changes = rank_changes(previous, current, k=1).set_index("feature")
    assert changes.loc["a", ["previous_rank", "rank", "rank_shift"]].tolist() == [1, 3, -2]
    assert changes.loc["c", "rank_shift"] == 2 and changes.loc["c", "shap_change"] == pytest.approx(3.0)
    assert bool(changes.loc["c", "entered_top_k"]) and bool(changes.loc["a", "left_top_k"])
    assert not changes.loc[["b", "new", "gone"], "entered_top_k"].any()
    assert pd.isna(changes.loc["new", "previous_rank"]) and pd.isna(changes.loc["gone", "rank"])
    assert list(changes.index[:2]) == ["gone", "new"]  # no rank on one side: listed first
    flat = rank_changes(previous, current, k=1)
    assert top_set_change(flat, 2) == (["c"], ["a"])
    text = describe_changes(flat, "prev/ridge", 1)
    assert "entered the top 1: c; left it: a" in text and "a 1→3" in text and "c +3" in text
    assert "first run" in describe_changes(flat.iloc[0:0], None, 1)


def test_psi_ignores_missing_values():
    values = np.arange(100.0)
    assert psi(values, np.append(values, [np.nan] * 30)) == pytest.approx(0.0)


def oos(rank_ic: float, hit_rate: float, n_oos: int = 400, n_taken: int = 200) -> dict[str, float]:
    return {"oos_rank_ic": rank_ic, "oos_hit_rate": hit_rate, "n_oos": n_oos, "oos_n_taken": n_taken}


def test_implausible_performance_names_the_features_that_carry_it():
    importance = pd.DataFrame({"feature": ["a", "b", "c", "d"], "perm_importance": [0.1, 2.0, 0.5, 1.0]})
    assert implausible_performance(oos(0.2, 0.6), importance, 0.5, 0.8) is None
    assert implausible_performance(oos(float("nan"), float("nan")), importance, 0.5, 0.8) is None
    text = implausible_performance(oos(0.98, 0.96), importance, 0.5, 0.8)
    assert text is not None
    ic_low = np.tanh(np.arctanh(0.98) - scipy.stats.norm.ppf(0.999) * np.sqrt(1.06 / 397))
    hit_low = statsmodels.stats.proportion.proportion_confint(192, 200, alpha=0.002, method="wilson")[0]
    assert text.startswith(
        f"OOS rank IC 0.980 (low end {ic_low:.3f} over 400 trades) > 0.5 and "
        f"OOS hit rate 0.960 (low end {hit_low:.3f} over 200 taken) > 0.8"
    )
    assert text.endswith("likely leak (largest OOS permutation importance): b (2), d (1), c (0.5)")
    only_hits = implausible_performance(oos(0.3, 0.9), importance, 0.5, 0.8)
    assert only_hits is not None and only_hits.startswith("OOS hit rate 0.900 (low end")


def test_the_out_of_sample_check_judges_the_low_end_not_the_point():
    """Honest quarters of the embedded data failed the point check: a hit rate of 0.938 over 16
    taken trades, an OOS rank IC of 0.532 over about 80 OOS trades; their low ends are plausible."""
    importance = pd.DataFrame({"feature": ["a"], "perm_importance": [1.0]})
    assert implausible_performance(oos(0.2, 0.938, 100, 16), importance, 0.5, 0.8) is None
    assert implausible_performance(oos(0.532, 0.6, 80, 40), importance, 0.5, 0.8) is None
    assert implausible_performance(oos(0.95, 0.6, 80, 40), importance, 0.5, 0.8) is not None


def mean_gains(planted: dict[str, tuple[float, float]], seed: int) -> tuple[float, float]:
    """Mean paired gain (warm - cold) in OOS rank IC and hit rate over quarters 2..8."""
    market = SimulatedMarket(start="2021-01-01", end="2022-12-31", per_day=20, n_noise=8, planted=planted)
    runs = warm_against_cold(
        market, seed, PriorParams(), ImportanceParams(perm_repeats=1, bootstrap_rounds=10)
    )
    return float(runs["ic_gain"].mean()), float(runs["edge_gain"].mean())


def test_warm_start_beats_cold_on_persistent_effects_and_costs_nothing_without_signal():
    """The empirical-Bayes prior on simulated markets (shared market moves, overlapping holdings) with
    the same ridge alpha in both arms (every prior, min_z 0, the default). Over 40 seeds: +0.015
    rank IC and +0.4 hit-rate points on persistent effects (most of it from knowing that the noise
    features stay at 0), nothing without signal (benchmarks/walk_forward.py); the standardized EMA
    prior this replaced gained +0.002 (issue 12)."""
    persistent = [mean_gains({"a": (0.05, 0.05), "b": (-0.04, -0.04)}, seed) for seed in range(3)]
    assert min(ic for ic, _ in persistent) > 0 and np.mean([ic for ic, _ in persistent]) > 0.01
    assert np.mean([hit for _, hit in persistent]) > 0.0
    null = [mean_gains({}, seed) for seed in range(3)]
    assert np.mean([ic for ic, _ in null]) > -0.02  # the standard error of this mean is about 0.01
