"""Scale: per-run compute time and peak memory of model + importance at 10k, 100k and 1M trades with
18 and 100 features, next to a floor computed in the same run by bare numpy doing the same
statistical work (the walk-forward ridge fits by normal equations, closed-form SHAP, Spearman ICs,
closed-form permutation deltas, bootstrap refits), and the history analytics: stability over 1,000
stored runs x 100 features, and the alpha evidence (weekly IC series, Newey-West tests, decay) of
100 features over ten years of 400 trades a day (about 1M distinct trades, 522 weeks).

Peak memory is tracemalloc's peak during the stage (numpy buffers included), measured in a second,
untimed pass, as a multiple of the float64 feature matrix.

    python benchmarks/scale.py [--sizes 10000 100000 1000000] [--features 18 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np
import pandas as pd

from persistence_pipeline.core.alpha import feature_alpha
from persistence_pipeline.core.evidence import EvidenceParams, feature_evidence, period_ic
from persistence_pipeline.core.importance import ImportanceParams, feature_importance
from persistence_pipeline.core.model import ModelParams, purged_walk_forward_splits, train_and_evaluate
from persistence_pipeline.core.simulation import SimulatedMarket, simulated_trades
from persistence_pipeline.core.stability import feature_stability, stability_summary


def synthetic(n: int, p: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    y = X[:, :3] @ np.array([0.02, -0.01, 0.005]) + rng.normal(scale=0.05, size=n)
    entry = np.datetime64("2015-01-01", "us") + np.sort(rng.integers(0, 3000 * 86400, n)) * np.timedelta64(
        1, "s"
    )
    exit_time = entry + rng.integers(3600, 10 * 86400, n) * np.timedelta64(1, "s")
    return X, y, entry, exit_time


def pipeline(X, y, entry, exit_time):
    features = [f"f{j}" for j in range(X.shape[1])]
    fitted = train_and_evaluate(X, y, entry, exit_time, features, ModelParams())
    feature_importance(fitted.model, fitted.fold_models, fitted.folds, X, y, features, ImportanceParams())


def _ranks(v: np.ndarray) -> np.ndarray:
    out = np.empty(len(v))
    out[np.argsort(v, kind="stable")] = np.arange(len(v))
    return out


def _ridge(Z: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    Zc, yc = Z - Z.mean(0), y - y.mean()
    return np.linalg.solve(Zc.T @ Zc + alpha * np.eye(Z.shape[1]), Zc.T @ yc)


def numpy_floor(X, y, entry, exit_time):
    """The same statistics in bare numpy: no sklearn, no pandas, no validation."""
    params, importance = ModelParams(), ImportanceParams()
    rng = np.random.default_rng(0)
    Z = (X - X.mean(0)) / X.std(0)
    folds = purged_walk_forward_splits(
        entry, exit_time, params.n_folds, pd.Timedelta(days=params.embargo_days)
    )
    for fold in folds:
        b = _ridge(Z[fold.train], y[fold.train], params.ridge_alpha)
        Zt = Z[fold.test]
        base = Zt @ b
        for j in range(Z.shape[1]):
            for _ in range(importance.perm_repeats):
                ((y[fold.test] - base - b[j] * (Zt[rng.permutation(len(Zt)), j] - Zt[:, j])) ** 2).mean()
    b = _ridge(Z, y, params.ridge_alpha)
    np.abs((Z - Z.mean(0)) * b).mean(0)
    ry = _ranks(y)
    [np.corrcoef(_ranks(Z[:, j]), ry)[0, 1] for j in range(Z.shape[1])]
    size = min(len(Z), importance.bootstrap_sample_size)
    for _ in range(importance.bootstrap_rounds):
        rows = rng.integers(0, len(Z), size)
        _ridge(Z[rows], y[rows], params.ridge_alpha)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def peak_bytes(fn, *args) -> int:
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def synthetic_history(n_runs: int, n_features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    starts = pd.date_range("2000-01-01", periods=n_runs, freq="7D")
    ranges = pd.DataFrame(
        {
            "run_key": [f"{d.date()}/ridge" for d in starts],
            "range_start": starts.date,
            "range_end": (starts + pd.Timedelta(days=89)).date,  # 90-day windows stepping a week
        }
    )
    runs = ranges["run_key"].tolist()
    base = rng.normal(size=n_features)
    shap = np.abs(base + rng.normal(scale=0.5, size=(n_runs, n_features)))
    ranks = (-shap).argsort(axis=1).argsort(axis=1) + 1
    history = pd.DataFrame(
        {
            "run_key": np.repeat(runs, n_features),
            "feature": np.tile([f"noise_{j:02d}" for j in range(n_features)], n_runs),
            "rank": ranks.ravel(),
            "coef": (base + rng.normal(scale=0.3, size=(n_runs, n_features))).ravel(),
            "shap_mean_abs": shap.ravel(),
            "ic": (0.02 * base + rng.normal(scale=0.03, size=(n_runs, n_features))).ravel(),
        }
    )
    return history, ranges, pd.Series(rng.normal(scale=0.05, size=n_runs), index=runs)


def stability_analytics(history, ranges, performance):
    feature_stability(history, 5)
    stability_summary(history, ranges, 5, 0.0)


def alpha_analytics(trades, market, history, ranges, performance):
    params = EvidenceParams()
    as_of = pd.Timestamp(market.end, tz="UTC") + pd.Timedelta(days=30)
    evidence = feature_evidence(period_ic(trades, market.features, params, as_of), params)
    topk = pd.Series(0.0, index=market.features)
    feature_alpha(evidence, history, ranges, performance, topk)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--features", type=int, nargs="+", default=[18, 100])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for p in args.features:
        for n in args.sizes:
            data = synthetic(n, p)
            repeats = args.repeats if n < 1_000_000 else 1
            ours = statistics.median(timed(pipeline, *data) for _ in range(repeats))
            floor = statistics.median(timed(numpy_floor, *data) for _ in range(repeats))
            matrix = data[0].nbytes
            rows.append(
                {
                    "features": p,
                    "trades": n,
                    "pipeline_s": ours,
                    "numpy_floor_s": floor,
                    "ratio": ours / floor,
                    "us_per_trade": 1e6 * ours / n,
                    "peak_x_matrix": peak_bytes(pipeline, *data) / matrix,
                    "floor_peak_x_matrix": peak_bytes(numpy_floor, *data) / matrix,
                }
            )
            print(f"measured {p} features x {n} trades", flush=True)
    table = pd.DataFrame(rows)
    print("\n## Model + importance per run (median of repeats; 1M trades: one run)\n")
    print(table.to_markdown(index=False, floatfmt=".2f"))
    print("\n## Growth with trades (time per trade relative to the smallest size; 1.0 = linear)\n")
    for p, group in table.groupby("features"):
        base = group["us_per_trade"].iloc[0]
        print(
            f"- {p} features: "
            + ", ".join(
                f"{n:,}: {u / base:.2f}" for n, u in zip(group["trades"], group["us_per_trade"], strict=True)
            )
        )
    history = synthetic_history(1000, 100)
    stability = statistics.median(timed(stability_analytics, *history) for _ in range(args.repeats))
    market = SimulatedMarket(start="2010-01-01", end="2019-12-31", per_day=400, n_symbols=200, n_noise=100)
    trades = simulated_trades(market, seed=0)
    alpha = statistics.median(timed(alpha_analytics, trades, market, *history) for _ in range(args.repeats))
    print(
        "\n## History analytics (median of repeats)\n\n"
        f"- stability (per feature + summary) over 1,000 runs x 100 features: {stability:.3f} s\n"
        f"- alpha evidence of 100 features over {len(trades):,} distinct trades in ten years "
        f"(522 weekly periods) and 1,000 runs: {alpha:.2f} s"
    )


if __name__ == "__main__":
    main()
