"""The numerics that keep a run's compute at its floor (issue 26) give what the library calls they
replace give: numpy average ranks against scipy and pandas, the normal-equation ridge against
sklearn's own Pipeline fit, the dot-product permutation importance against
sklearn.inspection.permutation_importance, integer period keys against timestamp arithmetic, and
the one-BLAS-thread limit."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import skops.io as sio
from sklearn.inspection import permutation_importance
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_info, threadpool_limits

from persistence_pipeline.core.evidence import (
    PERIOD_ANCHOR,
    complete_periods,
    period_numbers,
    period_start_index,
    period_starts,
)
from persistence_pipeline.core.importance import (
    ImportanceParams,
    importance_table,
    oos_permutation_importance,
)
from persistence_pipeline.core.metrics import average_ranks, rank_ic, rank_ic_block, rank_ic_columns
from persistence_pipeline.core.model import (
    ModelParams,
    RidgePrior,
    fit_prior_ridge,
    neutralized,
    one_blas_thread,
    predict,
    prior_penalties,
    train_and_evaluate,
)

pytestmark = pytest.mark.core

PRIOR = RidgePrior(np.array([0.5, np.nan, 0.0, -0.1, np.nan]), np.array([0.02, np.nan, 0.5, 0.05, np.nan]))


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)) * [1.0, 3.0, 0.5, 2.0, 1.0] + [0.0, 5.0, -1.0, 2.0, 0.0]
    X[:, 4] = np.round(X[:, 4])  # ties
    X[:4, 1] = 60.0  # beyond the clip
    y = 0.3 * X[:, 0] - 0.1 * X[:, 1] + rng.normal(scale=0.5, size=n)
    return X, y


def _times(n, seed=1):
    rng = np.random.default_rng(seed)
    entry = np.datetime64("2021-01-04T14:30", "us") + np.sort(rng.integers(0, 120, n)) * np.timedelta64(
        1, "D"
    )
    return entry, entry + rng.integers(0, 12, n) * np.timedelta64(1, "D")


def sklearn_prior_ridge(X, y, alpha, prior=None, sample_weight=None, clip_z=5.0):
    """The prior ridge as sklearn fits it: StandardScaler and the clip fit on X, Ridge(alpha=1) on the
    columns z_j / sqrt(lambda_j) against y - Z b0, coefficients mapped back (core/model.py)."""
    features = Pipeline(
        [
            ("scale", StandardScaler()),
            ("clip", FunctionTransformer(np.clip, kw_args={"a_min": -clip_z, "a_max": clip_z})),
        ]
    ).fit(X)
    Z = features.transform(X)
    b0, penalty = prior_penalties(prior, features.named_steps["scale"].scale_, float(np.var(y)), alpha)
    root = np.sqrt(penalty)
    ridge = Ridge(alpha=1.0).fit(Z / root, y - Z @ b0, sample_weight=sample_weight)
    ridge.coef_ = ridge.coef_ / root + b0
    ridge.alpha = float(alpha)
    return Pipeline([*features.steps, ("ridge", ridge)])


def assert_same_fit(model, reference, X):
    for name in ("mean_", "var_", "scale_"):
        np.testing.assert_allclose(
            getattr(model.named_steps["scale"], name),
            getattr(reference.named_steps["scale"], name),
            rtol=1e-12,
        )
    np.testing.assert_allclose(
        model.named_steps["ridge"].coef_, reference.named_steps["ridge"].coef_, rtol=1e-8, atol=1e-10
    )
    np.testing.assert_allclose(
        model.named_steps["ridge"].intercept_,
        reference.named_steps["ridge"].intercept_,
        rtol=1e-8,
        atol=1e-10,
    )
    np.testing.assert_allclose(model.predict(X), reference.predict(X), rtol=1e-8, atol=1e-10)


def test_average_ranks_match_scipy_and_pandas_with_ties_and_nan():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 300):
        values = rng.integers(0, 5, size=(n, 4)).astype("float64")
        values[:, 1] = rng.normal(size=n)
        values[:, 2] = 3.0  # constant
        np.testing.assert_array_equal(average_ranks(values), scipy.stats.rankdata(values, axis=0))
        np.testing.assert_array_equal(average_ranks(values[:, 0]), scipy.stats.rankdata(values[:, 0]))
        values[:: max(1, n // 3), 3] = np.nan
        expected = pd.DataFrame(values).rank(method="average").to_numpy()
        np.testing.assert_array_equal(average_ranks(values), expected)
    assert average_ranks(np.empty(0)).shape == (0,)
    assert average_ranks(np.empty((0, 3))).shape == (0, 3)


def test_rank_ics_match_spearmanr_with_ties_and_constants():
    rng = np.random.default_rng(1)
    y = np.round(rng.normal(size=400), 1)  # ties in the returns too
    X = np.column_stack([y + rng.normal(size=400), np.round(rng.normal(size=400)), np.full(400, 2.0)])
    expected = [scipy.stats.spearmanr(X[:, j], y).statistic for j in range(2)]
    np.testing.assert_allclose(rank_ic_columns(X, y)[:2], expected, rtol=1e-12)
    np.testing.assert_allclose(rank_ic_block(X, y)[:2], expected, rtol=1e-12)
    assert np.isnan(rank_ic_columns(X, y)[2]) and np.isnan(rank_ic_block(X, y)[2])
    assert rank_ic(X[:, 0], y) == pytest.approx(expected[0], rel=1e-12)


@pytest.mark.parametrize("prior", [None, PRIOR], ids=["no prior", "prior"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_the_normal_equation_ridge_equals_sklearns_fit(prior, weighted):
    X, y = _data()
    weights = np.random.default_rng(5).uniform(0.5, 1.5, len(y)) if weighted else None
    model = fit_prior_ridge(X, y, 7.0, prior, weights, clip_z=3.0)
    reference = sklearn_prior_ridge(X, y, 7.0, prior, weights, clip_z=3.0)
    assert_same_fit(model, reference, X)
    extreme = X[:10] * 40.0  # the clip is applied to new data as sklearn's transform does
    np.testing.assert_allclose(model.predict(extreme), reference.predict(extreme), rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(predict(model, extreme), model.predict(extreme))


def test_a_constant_or_held_feature_gets_scale_one_and_coefficient_zero():
    X, y = _data()
    X[:, 2] = 1e6  # constant: StandardScaler's scale 1
    X, prior = neutralized(X, PRIOR, _screen_mask())  # held out by a leak screen, with its prior
    model = fit_prior_ridge(X, y, 2.0, prior)
    assert_same_fit(model, sklearn_prior_ridge(X, y, 2.0, prior), X)
    assert model.named_steps["scale"].scale_[2] == 1.0 and model.named_steps["ridge"].coef_[3] == 0.0


def test_the_fitted_pipeline_is_the_object_sklearn_builds():
    X, y = _data()
    model = fit_prior_ridge(X, y, 4.0, None, np.ones(len(y)))
    reference = sklearn_prior_ridge(X, y, 4.0, None, np.ones(len(y)))
    assert [name for name, _ in model.steps] == ["scale", "clip", "ridge"]
    for (_, ours), (_, theirs) in zip(model.steps, reference.steps, strict=True):
        assert type(ours) is type(theirs) and ours.get_params() == theirs.get_params()
        assert list(vars(ours)) == list(vars(theirs))  # the same fitted attributes, in fit's order
        for name, value in vars(theirs).items():
            assert type(vars(ours)[name]) is type(value), name
    loaded = sio.loads(sio.dumps(model), trusted=["numpy.clip"])
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def _screen_mask():
    return np.array([False, False, False, True, False])


@pytest.mark.parametrize("prior", [None, PRIOR], ids=["no prior", "prior"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_walk_forward_models_equal_sklearns_fits_under_a_leak_screen(prior, weighted):
    X, y = _data(n=400)
    entry, exit = _times(400)
    weights = np.random.default_rng(3).uniform(0.5, 2.0, len(y)) if weighted else None
    mask = _screen_mask()
    params = ModelParams(n_folds=3, ridge_alpha=5.0)
    fitted = train_and_evaluate(
        X, y, entry, exit, list("abcde"), params, prior, weights, screen=lambda rows: mask
    )
    np.testing.assert_array_equal(fitted.screened, mask)
    predictions = []
    for fold, model in zip(fitted.folds, fitted.fold_models, strict=True):
        X_train, fold_prior = neutralized(X[fold.train], prior, mask)
        fold_weights = None if weights is None else weights[fold.train]
        reference = sklearn_prior_ridge(X_train, y[fold.train], 5.0, fold_prior, fold_weights)
        assert isinstance(model, Pipeline)
        assert_same_fit(model, reference, X[fold.test])
        assert model.named_steps["ridge"].coef_[3] == 0.0
        predictions.append(reference.predict(X[fold.test]))
    np.testing.assert_allclose(fitted.oos_prediction, np.concatenate(predictions), rtol=1e-8, atol=1e-10)
    X_final, final_prior = neutralized(X, prior, mask)
    assert_same_fit(fitted.model, sklearn_prior_ridge(X_final, y, 5.0, final_prior, weights), X)
    assert (fitted.prior_weight is None) == (prior is None)


def test_a_run_is_deterministic():
    X, y = _data(n=400)
    entry, exit = _times(400)
    features = list("abcde")

    def run():
        fitted = train_and_evaluate(X, y, entry, exit, features, ModelParams(n_folds=3), PRIOR)
        table, _ = importance_table(
            fitted.model, fitted.fold_models, fitted.folds, X, y, features, ImportanceParams(), PRIOR
        )
        return fitted, table

    (first, first_table), (second, second_table) = run(), run()
    np.testing.assert_array_equal(first.oos_prediction, second.oos_prediction)
    np.testing.assert_array_equal(first.model.predict(X), second.model.predict(X))
    pd.testing.assert_frame_equal(first_table, second_table, check_exact=True)


def test_permutation_importance_expectation_matches_sklearns_within_sampling_error():
    X, y = _data(n=900)
    entry, exit = _times(900)
    fitted = train_and_evaluate(X, y, entry, exit, list("abcde"), ModelParams(n_folds=3))
    repeats = 400
    mean, std = oos_permutation_importance(
        fitted.fold_models, fitted.folds, X, y, ImportanceParams(perm_repeats=repeats, seed=11)
    )
    n_oos = sum(fold.test.size for fold in fitted.folds)
    pooled, pooled_sd = np.zeros(X.shape[1]), np.zeros(X.shape[1])
    for model, fold in zip(fitted.fold_models, fitted.folds, strict=True):
        theirs = permutation_importance(
            model,
            X[fold.test],
            y[fold.test],
            scoring="neg_mean_squared_error",
            n_repeats=repeats,
            random_state=3,
        )
        share = fold.test.size / n_oos  # sklearn scores each fold alone: pool by its OOS trades
        pooled += share * theirs.importances_mean
        pooled_sd += (share * theirs.importances_std) ** 2
    error = np.sqrt(std**2 / repeats + pooled_sd / repeats)
    assert np.all(np.abs(mean - pooled) <= 4 * error + 1e-12)
    assert mean[0] > 10 * error[0]  # the planted feature is measured, not noise


def test_integer_period_keys_match_timestamp_arithmetic():
    times = ["1969-12-31 23:59:00", "1970-01-05 00:00:00", "2024-01-07 23:59:59.999", "2024-01-08 00:00:00"]
    entry = pd.Series(pd.to_datetime(times, utc=True, format="ISO8601"))
    for days in (1, 7, 14, 91):
        offset = (entry - PERIOD_ANCHOR) // pd.Timedelta(days=days)
        expected = PERIOD_ANCHOR + offset * pd.Timedelta(days=days)
        np.testing.assert_array_equal(period_numbers(entry, days), offset.to_numpy())
        pd.testing.assert_series_equal(period_starts(entry, days), expected)
        np.testing.assert_array_equal(
            period_start_index(period_numbers(entry, days), days), pd.DatetimeIndex(expected)
        )
    naive_ns = pd.Series(entry.dt.tz_localize(None).astype("datetime64[ns]"))
    np.testing.assert_array_equal(period_numbers(naive_ns, 7), period_numbers(entry, 7))


def test_complete_periods_match_the_groupby_of_period_starts():
    rng = np.random.default_rng(2)
    entry = pd.Series(
        pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 60 * 24, 300), "h")
    )
    exit = entry + pd.to_timedelta(rng.integers(1, 24 * 20, 300), "h")
    trades = pd.DataFrame({"entry_time": entry, "exit_time": exit, "return": rng.normal(size=300)})
    trades.loc[5, "return"] = np.nan
    as_of = pd.Timestamp("2024-02-20", tz="UTC")
    for days in (7, 14):
        period = period_starts(trades["entry_time"], days)
        realized = (trades["exit_time"] < as_of) & trades["return"].notna()
        incomplete = (~realized).groupby(period.to_numpy()).transform("any").to_numpy()
        expected = (period + pd.Timedelta(days=days) <= as_of) & ~incomplete
        pd.testing.assert_series_equal(complete_periods(trades, as_of, days), expected)


def test_the_run_limits_blas_to_one_thread_and_restores_it():
    seen: list[int] = []

    @one_blas_thread
    def numerics():
        seen.extend(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")

    with threadpool_limits(limits=2, user_api="blas"):
        numerics()
        after = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert seen and set(seen) == {1}
    assert set(after) == {2}
