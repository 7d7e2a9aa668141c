"""Every statistic of the core cross-checked against an independent computation on small data."""

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import shap
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.pipeline import Pipeline

from persistence_pipeline.core.dataset import data_loss, training_set
from persistence_pipeline.core.design import DesignParams
from persistence_pipeline.core.importance import (
    ImportanceParams,
    importance_ranks,
    importance_table,
    linear_shap_values,
    mean_abs_shap,
    oos_permutation_importance,
    pair_strengths,
    segment_importance,
    top_interactions,
)
from persistence_pipeline.core.metrics import out_of_sample_metrics, rank_ic, rank_ic_columns
from persistence_pipeline.core.model import (
    ModelParams,
    NotEnoughDataError,
    RidgePrior,
    fit_model,
    fit_prior_ridge,
    purged_walk_forward_splits,
    raw_coefficients,
    train_and_evaluate,
)

pytestmark = pytest.mark.core


def _data(n=300, p=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * np.array([1.0, 3.0, 0.5, 2.0])[:p] + np.array([0.0, 5.0, -1.0, 2.0])[:p]
    y = 0.3 * X[:, 0] - 0.1 * X[:, 1] + rng.normal(scale=0.5, size=n)
    return X, y


def _times(n, seed=1):
    rng = np.random.default_rng(seed)
    entry = np.datetime64("2021-01-04T14:30", "us") + np.sort(rng.integers(0, 120, n)) * np.timedelta64(
        1, "D"
    )
    exit = entry + rng.integers(0, 12, n) * np.timedelta64(1, "D")
    return entry, exit


def test_rank_ic_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, 50).astype(float)  # many ties
    b = a + rng.normal(size=50)
    assert rank_ic(a, b) == pytest.approx(scipy.stats.spearmanr(a, b).statistic, abs=1e-12)
    columns = np.column_stack([a, -b, rng.normal(size=50)])
    expected = [scipy.stats.spearmanr(columns[:, j], b).statistic for j in range(3)]
    np.testing.assert_allclose(rank_ic_columns(columns, b), expected, atol=1e-12)


def test_rank_ic_of_constant_is_nan():
    assert np.isnan(rank_ic(np.ones(10), np.arange(10.0)))


def test_out_of_sample_metrics_by_hand():
    prediction = np.array([0.2, -0.1, 0.3, 0.05, -0.4])
    realized = np.array([0.1, 0.2, -0.05, 0.02, -0.3])
    m = out_of_sample_metrics(prediction, realized)
    assert m.r2 == pytest.approx(r2_score(realized, prediction))
    assert m.rank_ic == pytest.approx(scipy.stats.spearmanr(prediction, realized).statistic)
    assert m.n_taken == 3  # predictions 0.2, 0.3, 0.05
    assert m.hit_rate == pytest.approx(2 / 3)  # realized 0.1, -0.05, 0.02
    assert m.mean_return_taken == pytest.approx((0.1 - 0.05 + 0.02) / 3)
    assert m.mean_return_all == pytest.approx(realized.mean())


def test_purged_walk_forward_matches_brute_force_loop():
    entry, exit = _times(200)
    embargo = pd.Timedelta(days=2)
    folds = purged_walk_forward_splits(entry, exit, n_folds=4, embargo=embargo)
    order = sorted(range(200), key=lambda i: (entry[i], i))
    size, extra = divmod(200, 5)
    bounds, start = [], 0
    for b in range(5):
        stop = start + size + (1 if b < extra else 0)
        bounds.append(order[start:stop])
        start = stop
    assert len(folds) == 4
    gap = np.timedelta64(2, "D")
    for fold, block in zip(folds, bounds[1:], strict=True):
        test_start = min(entry[i] for i in block)
        expected_train = [i for i in range(200) if entry[i] < test_start and not exit[i] >= test_start - gap]
        assert fold.test.tolist() == sorted(block)
        assert fold.train.tolist() == expected_train
        # no training label interval reaches into the test block or its embargo gap
        assert all(exit[i] < test_start - gap for i in fold.train)
        assert not set(fold.train) & set(fold.test)


def test_purging_removes_overlapping_trades():
    entry = np.array(["2021-01-01", "2021-01-02", "2021-01-05", "2021-01-06"], dtype="datetime64[us]")
    exit = np.array(["2021-01-02", "2021-01-05", "2021-01-07", "2021-01-08"], dtype="datetime64[us]")
    (fold,) = purged_walk_forward_splits(entry, exit, n_folds=1, embargo=pd.Timedelta(0))
    assert fold.test.tolist() == [2, 3]
    assert fold.train.tolist() == [0]  # trade 1 exits on the test block's first entry: purged


PRIOR = RidgePrior(np.array([0.5, np.nan, 0.0, -0.1]), np.array([0.02, np.nan, 0.5, 0.05]))


def test_prior_ridge_matches_normal_equations():
    X, y = _data()
    weights = np.random.default_rng(5).uniform(0.5, 1.5, len(y))
    alpha = 7.0
    model = fit_prior_ridge(X, y, alpha, PRIOR, weights)
    scale = X.std(0)
    Z = (X - X.mean(0)) / scale
    # the prior in this fit's standardized units: mean m * sd, penalty var(y) / (s * sd)^2; the
    # feature without a prior keeps alpha and a prior mean of 0
    has = np.isfinite(PRIOR.mean_raw)
    b0 = np.where(has, np.nan_to_num(PRIOR.mean_raw) * scale, 0.0)
    penalty = np.where(has, y.var() / (np.nan_to_num(PRIOR.sd_raw, nan=1.0) * scale) ** 2, alpha)
    # minimize sum w (y - c - Z b)^2 + sum penalty_j (b_j - b0_j)^2 by the weighted normal
    # equations, intercept unpenalized
    zw = (Z * weights[:, None]).sum(0) / weights.sum()
    yw = (y * weights).sum() / weights.sum()
    Zc, yc = Z - zw, y - yw
    A = Zc.T @ (Zc * weights[:, None]) + np.diag(penalty)
    b = np.linalg.solve(A, Zc.T @ (weights * yc) + penalty * b0)
    np.testing.assert_allclose(model.named_steps["ridge"].coef_, b, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.predict(X), yw + (Z - zw) @ b, rtol=1e-8, atol=1e-10)
    plain = fit_prior_ridge(X, y, alpha, None, weights).named_steps["ridge"]
    reference = Ridge(alpha=alpha).fit(Z, y, sample_weight=weights)
    np.testing.assert_allclose(plain.coef_, reference.coef_, rtol=1e-9)


def test_numpy_prior_ridge_equals_the_sklearn_pipeline():
    from persistence_pipeline.core.model import prior_ridge_coefficients, standardized_inputs

    X, y = _data(n=150)
    X[:3, 1] = 1e3  # inputs beyond the clip
    weights = np.random.default_rng(2).uniform(0.5, 2.0, len(y))
    model = fit_prior_ridge(X, y, 4.0, PRIOR, weights, clip_z=3.0)
    coef, Z, scale = prior_ridge_coefficients(X, y, 4.0, PRIOR, weights, 3.0)
    np.testing.assert_allclose(coef, model.named_steps["ridge"].coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(Z, standardized_inputs(model, X), rtol=1e-12)
    np.testing.assert_allclose(scale, model.named_steps["scale"].scale_, rtol=1e-12)


def test_a_precise_prior_holds_the_raw_coefficient_whatever_the_feature_scale():
    X, y = _data(n=60)
    target = np.array([1.0, 2.0, 3.0, 4.0])
    precise = RidgePrior(target, np.full(4, 1e-9))
    for factor in (1.0, 10.0):  # a prior in raw units means the same effect at another scale
        model = fit_prior_ridge(X * [factor, 1, 1, 1], y, 1e-6, precise)
        raw = raw_coefficients(model)
        assert raw is not None
        np.testing.assert_allclose(raw, target, rtol=1e-6)
    plain = fit_prior_ridge(X, y, 1e6).named_steps["ridge"].coef_
    np.testing.assert_allclose(plain, 0.0, atol=1e-3)
    with pytest.raises(ValueError, match="positive sd"):
        RidgePrior(np.array([1.0]), np.array([0.0]))


def test_linear_shap_matches_shap_linear_explainer():
    X, y = _data(n=80)
    model = fit_prior_ridge(X, y, 3.0)
    Z = model.named_steps["scale"].transform(X)
    ridge = model.named_steps["ridge"]
    explainer = shap.LinearExplainer(ridge, shap.maskers.Independent(Z, max_samples=len(Z)))
    expected = explainer.shap_values(Z)
    np.testing.assert_allclose(linear_shap_values(model, X), expected, rtol=1e-7, atol=1e-10)
    values, _, n = mean_abs_shap(model, X, ImportanceParams())
    np.testing.assert_allclose(values, np.abs(expected).mean(0), rtol=1e-7)
    assert n == 80


def test_tree_shap_is_additive_and_bounded():
    X, y = _data(n=400)
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(X, y)
    values, _, n = mean_abs_shap(model, X, ImportanceParams(shap_sample_size=100))
    assert n == 100
    explainer = shap.TreeExplainer(model)
    full = explainer.shap_values(X[:50])
    np.testing.assert_allclose(full.sum(1) + explainer.expected_value, model.predict(X[:50]), atol=1e-6)
    assert min(values[0], values[1]) > max(values[2], values[3])  # planted effects beat noise


def test_group_shap_is_the_mean_abs_of_the_summed_shap_values():
    """Opposite-signed near-twins: each member has a large mean |SHAP| but their sum nearly cancels.
    The group's figure is mean |phi_a + phi_b| (checked against shap's explainers), not the sum of
    the members' mean |phi| (about 7x too large here)."""
    rng = np.random.default_rng(3)
    n = 400
    base = rng.normal(size=n)
    X = np.column_stack([base, base + rng.normal(scale=0.1, size=n), rng.normal(size=n)])
    y = 0.5 * X[:, 0] - 0.45 * X[:, 1] + rng.normal(scale=0.1, size=n)
    groups = np.array([1, 1, 2])
    model = fit_prior_ridge(X, y, 0.01)
    Z = model.named_steps["scale"].transform(X)
    phi = shap.LinearExplainer(
        model.named_steps["ridge"], shap.maskers.Independent(Z, max_samples=n)
    ).shap_values(Z)
    members, group, _ = mean_abs_shap(model, X, ImportanceParams(), groups)
    twin = np.abs(phi[:, 0] + phi[:, 1]).mean()
    np.testing.assert_allclose(group, [twin, twin, np.abs(phi[:, 2]).mean()], rtol=1e-7)
    assert members[0] + members[1] > 5 * twin  # what summing the members' figures reported
    trees = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(X, y)
    members, group, _ = mean_abs_shap(trees, X, ImportanceParams(shap_sample_size=n), groups)
    tree_phi = shap.TreeExplainer(trees).shap_values(X)
    np.testing.assert_allclose(group[0], np.abs(tree_phi[:, 0] + tree_phi[:, 1]).mean(), rtol=1e-6)
    np.testing.assert_allclose(members, np.abs(tree_phi).mean(axis=0), rtol=1e-6)


def _brute_force_permutation(fold_models, folds, X, y, params):
    """sklearn-style permutation importance, one predict per permuted copy, same permutation stream."""
    rng = np.random.default_rng(params.seed)
    increase = np.zeros((params.perm_repeats, X.shape[1]))
    n = 0
    for model, fold in zip(fold_models, folds, strict=True):
        Xt, yt = X[fold.test], y[fold.test]
        base = np.sum((yt - model.predict(Xt)) ** 2)
        for j in range(X.shape[1]):
            for r in range(params.perm_repeats):
                shuffled = Xt.copy()
                shuffled[:, j] = Xt[rng.permutation(len(yt)), j]
                increase[r, j] += np.sum((yt - model.predict(shuffled)) ** 2) - base
        n += len(yt)
    return (increase / n).mean(0), (increase / n).std(0, ddof=1)


@pytest.mark.parametrize("kind", ["ridge", "gbt"])
def test_permutation_importance_matches_brute_force(kind):
    X, y = _data(n=300)
    entry, exit = _times(300)
    fitted = train_and_evaluate(
        X, y, entry, exit, list("abcd"), ModelParams(kind=kind, n_folds=3, gbt_max_iter=20)
    )
    params = ImportanceParams(perm_repeats=4, seed=7)
    mean, std = oos_permutation_importance(fitted.fold_models, fitted.folds, X, y, params)
    expected_mean, expected_std = _brute_force_permutation(fitted.fold_models, fitted.folds, X, y, params)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(std, expected_std, rtol=1e-9, atol=1e-12)
    assert mean[0] > mean[2]  # the planted feature matters more than a noise feature


def test_walk_forward_metrics_are_out_of_sample():
    X, y = _data(n=300)
    entry, exit = _times(300)
    fitted = train_and_evaluate(X, y, entry, exit, list("abcd"), ModelParams(n_folds=3))
    # recompute the OOS predictions by hand: refit each fold on its purged past only
    for fold, model in zip(fitted.folds, fitted.fold_models, strict=True):
        refit = fit_prior_ridge(X[fold.train], y[fold.train], 10.0)
        np.testing.assert_allclose(model.predict(X[fold.test]), refit.predict(X[fold.test]))
        assert entry[fold.train].max() < entry[fold.test].min()
    realized = y[fitted.oos_positions]
    assert fitted.metrics.rank_ic == pytest.approx(
        scipy.stats.spearmanr(fitted.oos_prediction, realized).statistic
    )
    assert fitted.metrics.rank_ic > 0.3  # planted signal is found out of sample
    assert fitted.metrics.n_oos == len(set(fitted.oos_positions.tolist()))


def test_too_few_trades_is_a_clear_error():
    X, y = _data(n=30)
    entry, exit = _times(30)
    with pytest.raises(NotEnoughDataError, match="only 30 trades with a realized label; at least 50"):
        train_and_evaluate(X, y, entry, exit, list("abcd"), ModelParams())


def test_importance_table_ranks_and_ic():
    X, y = _data(n=300)
    entry, exit = _times(300)
    fitted = train_and_evaluate(X, y, entry, exit, list("abcd"), ModelParams(n_folds=3))
    table, n = importance_table(
        fitted.model, fitted.fold_models, fitted.folds, X, y, list("abcd"), ImportanceParams()
    )
    assert table["rank"].tolist() == [1, 2, 3, 4]
    assert table["shap_mean_abs"].is_monotonic_decreasing
    by_feature = table.set_index("feature")
    for j, name in enumerate("abcd"):
        assert by_feature.loc[name, "ic"] == pytest.approx(scipy.stats.spearmanr(X[:, j], y).statistic)
    assert isinstance(fitted.model, Pipeline)
    coef = fitted.model.named_steps["ridge"].coef_
    np.testing.assert_allclose(by_feature.loc[list("abcd"), "coef"], coef)


def test_ranks_break_ties_by_name():
    assert importance_ranks(np.array([1.0, 2.0, 2.0, 0.5]), ["d", "c", "b", "a"]).tolist() == [3, 2, 1, 4]


def test_model_is_deterministic_for_a_seed():
    X, y = _data(n=300)
    params = ModelParams(kind="gbt", gbt_max_iter=20, seed=3)
    a = fit_model(X, y, params, None, None).predict(X)
    b = fit_model(X, y, params, None, None).predict(X)
    np.testing.assert_array_equal(a, b)


def test_out_of_range_inputs_are_clipped_at_five_sigma():
    X, y = _data(n=200)
    model = fit_prior_ridge(X, y, 1.0, clip_z=5.0)
    scale = model.named_steps["scale"]
    at_five = scale.mean_ + 5 * scale.scale_
    extreme = scale.mean_ + 100 * scale.scale_
    np.testing.assert_allclose(model.predict(extreme[None, :]), model.predict(at_five[None, :]))
    shap_values = linear_shap_values(model, np.vstack([X, extreme]))
    assert np.abs(shap_values).max() <= np.abs(model.named_steps["ridge"].coef_).max() * 10


def test_pair_strengths_by_brute_force():
    rng = np.random.default_rng(6)
    values = rng.normal(size=(30, 4, 4))
    table = pair_strengths(values, ["a", "b", "c", "d"], top=3)
    brute = {
        (f, g): np.mean([abs(values[t, i, j] + values[t, j, i]) for t in range(30)])
        for (i, f), (j, g) in itertools.combinations(enumerate("abcd"), 2)
    }
    best = sorted(brute.items(), key=lambda kv: -kv[1])[:3]
    assert list(zip(table["feature_a"], table["feature_b"], strict=True)) == [pair for pair, _ in best]
    np.testing.assert_allclose(table["interaction_mean_abs"], [v for _, v in best])
    assert table["rank"].tolist() == [1, 2, 3]


def test_a_tree_model_records_the_interaction_a_linear_model_cannot_have():
    """`a` matters only when `b` is positive: the tree's strongest SHAP interaction is (a, b), as
    shap's TreeExplainer gives it directly; a linear model records none."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3000, 4))
    y = 0.5 * X[:, 0] * (X[:, 1] > 0) + rng.normal(scale=0.2, size=3000)
    features = ["a", "b", "c", "d"]
    params = ImportanceParams(interaction_sample_size=300, interaction_top=3)
    model = HistGradientBoostingRegressor(max_iter=60, random_state=0).fit(X, y)
    table = top_interactions(model, X, features, params)
    assert (table["feature_a"].iloc[0], table["feature_b"].iloc[0]) == ("a", "b")
    sample = X[np.sort(np.random.default_rng(params.seed).choice(len(X), 300, replace=False))]
    direct = shap.TreeExplainer(model).shap_interaction_values(sample)
    assert table["interaction_mean_abs"].iloc[0] == pytest.approx(np.abs(2 * direct[:, 0, 1]).mean())
    assert table["interaction_mean_abs"].iloc[0] > 5 * table["interaction_mean_abs"].iloc[1]
    assert top_interactions(fit_prior_ridge(X, y, 1.0), X, features, params).empty


def test_the_training_sample_is_chosen_by_entry_not_by_exit():
    """Losers are held longer. Keeping every trade realized by the range end keeps the last days'
    quick winners and drops their slow losers, so the last (always tested) block looks better than
    it is; cut at the first trade still open, the sample is every trade entered before the cut."""
    rng = np.random.default_rng(4)
    n = 4000
    entry = pd.Timestamp("2021-01-04", tz="UTC") + pd.to_timedelta(np.sort(rng.uniform(0, 90, n)), unit="D")
    ret = rng.normal(0.0, 0.02, n)
    held = np.where(ret < 0, rng.uniform(3, 12, n), rng.uniform(0.5, 4, n))  # losers held longer
    trades = pd.DataFrame(
        {
            "trade_id": [f"t{i:05d}" for i in range(n)],
            "strategy": "s",
            "entry_time": entry,
            "exit_time": entry + pd.to_timedelta(held, unit="D"),
            "side": 1,
            "return": ret,
            "f": rng.normal(size=n),
        }
    )
    end = pd.Timestamp("2021-04-04", tz="UTC")
    data = training_set(trades, end, DesignParams())
    open_at_end = trades["exit_time"] >= end
    cut = trades.loc[open_at_end, "entry_time"].min()
    expected = trades[trades["entry_time"] < cut]
    assert (expected["exit_time"] < end).all()  # before the cut, every trade is realized
    assert data.trades["trade_id"].tolist() == expected["trade_id"].tolist()
    assert data.n_unrealized == int(open_at_end.sum()) and data.n_unrealized > 0
    assert data.n_censored == int((~open_at_end).sum()) - len(expected) > 0
    loss = data_loss(n, data).set_index("reason")["n_trades"]
    assert (
        loss["dropped: realized, entered after the first trade still open at the range end"]
        == data.n_censored
    )
    # the bias it removes: over the last ten days, the realized trades win more than all trades do
    last = trades["entry_time"] >= end - pd.Timedelta(days=10)
    realized_only = trades.loc[last & ~open_at_end, "return"]
    assert (realized_only > 0).mean() > (trades.loc[last, "return"] > 0).mean() + 0.1


def test_segment_importance_against_a_brute_force_loop():
    X, y = _data(n=200)
    model = fit_prior_ridge(X, y, 1.0)
    coef = model.named_steps["ridge"].coef_
    Z = (X - X.mean(0)) / X.std(0)
    segments = {"strategy=a": np.arange(200) < 80, "side=short": np.arange(200) % 3 == 0}
    features = ["f0", "f1", "f2", "f3"]
    table = segment_importance(model, X, y, features, segments, ImportanceParams())
    for name, mask in segments.items():
        rows = table[table["segment"] == name].set_index("feature")
        for j, feature in enumerate(features):
            inside = np.flatnonzero(mask)  # SHAP measured from the segment's own average trade
            shap_by_hand = np.mean([abs(coef[j] * (Z[i, j] - Z[inside, j].mean())) for i in inside])
            assert rows.loc[feature, "shap_mean_abs"] == pytest.approx(shap_by_hand)
            ic = scipy.stats.spearmanr(X[mask, j], y[mask]).statistic
            assert rows.loc[feature, "ic"] == pytest.approx(ic)
            assert rows.loc[feature, "n_trades"] == mask.sum()
        assert rows["rank"].tolist() == sorted(rows["rank"].tolist())  # listed by rank, 1 first
        assert rows.loc[rows["shap_mean_abs"].idxmax(), "rank"] == 1
    # a column constant within a segment (an indicator of it) has no importance there
    indicator = np.column_stack([X[:, :3], segments["strategy=a"].astype(float)])
    model = fit_prior_ridge(indicator, y, 1.0)
    table = segment_importance(model, indicator, y, features, segments, ImportanceParams())
    row = table.set_index(["segment", "feature"]).loc[("strategy=a", "f3")]
    assert row["shap_mean_abs"] == pytest.approx(0.0, abs=1e-12) and pd.isna(row["ic"])
