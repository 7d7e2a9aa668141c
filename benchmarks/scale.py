"""Scale: the per-run compute of model + importance (walk-forward ridge fits, OOS metrics, SHAP,
OOS permutation importance, univariate ICs, bootstrap refits) at 10k, 100k and 1M trades x 18
features and 100k x 100, against

- floor: bare numpy doing the same statistical work with nothing else: each fold standardized and
  clipped on its own training trades and solved by the normal equations, the OOS predictions and
  their rank IC, closed-form SHAP, permutation deltas as one dot product per permutation, argsort
  ranks (no tie handling: the data have no ties), the bootstrap refits with their mean |SHAP|;
- peer: the same statistics the way a seed project computes them: a plain sklearn Pipeline
  (StandardScaler, clip, Ridge) fit per fold, per bootstrap resample and on all trades,
  shap.Explainer on the final model, sklearn.inspection.permutation_importance per fold and
  scipy's spearmanr per feature;
- default BLAS threads: the project itself without its one-BLAS-thread limit (the undecorated
  functions), to show what the limit buys.

One table, measured in one run: the contenders take turns within each repeat (interleaved, so a
busy machine slows them alike) and each figure is the median over repeats of CPU time
(time.process_time: every thread of the process, so a spinning BLAS thread counts) and of wall
time. Peak memory is tracemalloc's peak in a first, untimed pass (which also warms up), as a
multiple of the float64 feature matrix. Then the history analytics: stability over 1,000 stored
runs x 100 features, and the alpha evidence (weekly IC series, Newey-West tests, decay) of 100
features over ten years of 400 trades a day (about 1M distinct trades, 522 weeks).

    python -m benchmarks.scale [--cases 18x10000 18x100000 18x1000000 100x100000] [--repeats 5]
                               [--slow-repeats 1] [--no-history]

The peer and the default BLAS threads take many times the project's time, the point of measuring
them: they get `--slow-repeats` turns (the first rounds of the interleaving), the rest `--repeats`.
About 5 minutes on 2 busy cores with the defaults.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd
import shap
from scipy import stats
from sklearn.inspection import permutation_importance
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import ThreadpoolController

from persistence_pipeline.core.alpha import alpha_table
from persistence_pipeline.core.evidence import EvidenceParams, feature_evidence, period_ic
from persistence_pipeline.core.importance import ImportanceParams, importance_table
from persistence_pipeline.core.model import (
    ModelParams,
    min_fold_train_trades,
    purged_walk_forward_splits,
    train_and_evaluate,
)
from persistence_pipeline.core.stability import per_feature_stability, summarize_stability
from persistence_pipeline_tests.simulation import SimulatedMarket, simulated_trades

DEFAULT_CASES = ["18x10000", "18x100000", "18x1000000", "100x100000"]
THREADPOOLS = ThreadpoolController()  # found once, as the project does: a scan costs about 1 ms


def synthetic(n: int, p: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    y = X[:, :3] @ np.array([0.02, -0.01, 0.005]) + rng.normal(scale=0.05, size=n)
    entry = np.datetime64("2015-01-01", "us") + np.sort(rng.integers(0, 3000 * 86400, n)) * np.timedelta64(
        1, "s"
    )
    exit_time = entry + rng.integers(3600, 10 * 86400, n) * np.timedelta64(1, "s")
    return X, y, entry, exit_time


def project(X, y, entry, exit_time):
    features = [f"f{j}" for j in range(X.shape[1])]
    fitted = train_and_evaluate(X, y, entry, exit_time, features, ModelParams())
    importance_table(fitted.model, fitted.fold_models, fitted.folds, X, y, features, ImportanceParams())


def project_default_blas(X, y, entry, exit_time):
    """The project's numerics without the one-BLAS-thread limit its entry points set."""
    features = [f"f{j}" for j in range(X.shape[1])]
    fitted = train_and_evaluate.__wrapped__(X, y, entry, exit_time, features, ModelParams())  # type: ignore[attr-defined]
    importance_table.__wrapped__(  # type: ignore[attr-defined]
        fitted.model, fitted.fold_models, fitted.folds, X, y, features, ImportanceParams()
    )


def evaluated_folds(entry, exit_time, n_features: int, params: ModelParams):
    minimum = min_fold_train_trades(params.min_train_trades, n_features)
    splits = purged_walk_forward_splits(
        entry, exit_time, params.n_folds, pd.Timedelta(days=params.embargo_days)
    )
    return [fold for fold in splits if fold.train.size >= minimum]


def _standardize(Z: np.ndarray, clip: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z (a copy the caller owns) standardized and clipped in place, and its mean and sd."""
    mean = Z.mean(0)
    Z -= mean
    scale = np.sqrt(np.einsum("ij,ij->j", Z, Z) / len(Z))
    Z /= scale
    np.clip(Z, -clip, clip, out=Z)
    return Z, mean, scale


def _ridge(Z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    z_mean, y_mean = Z.mean(0), y.mean()
    gram = Z.T @ Z - len(Z) * np.outer(z_mean, z_mean) + alpha * np.eye(Z.shape[1])
    b = np.linalg.solve(gram, Z.T @ (y - y_mean))
    return b, y_mean - z_mean @ b


def _ranks(v: np.ndarray) -> np.ndarray:
    out = np.empty(len(v))
    out[np.argsort(v)] = np.arange(1.0, len(v) + 1)
    return out


def _spearman(x: np.ndarray, y_ranks_centered: np.ndarray) -> float:
    n = len(x)
    return float(_ranks(x) @ y_ranks_centered / (n * (n * n - 1) / 12))


def numpy_floor(X, y, entry, exit_time):
    """The same statistics in bare numpy: no sklearn, no pandas, no validation, no tie handling."""
    params, importance = ModelParams(), ImportanceParams()
    rng = np.random.default_rng(0)
    clip, alpha = params.clip_z, params.ridge_alpha
    folds = evaluated_folds(entry, exit_time, X.shape[1], params)
    predictions = []
    for fold in folds:
        Z, mean, scale = _standardize(X[fold.train], clip)
        b, intercept = _ridge(Z, y[fold.train], alpha)
        Zt = np.clip((X[fold.test] - mean) / scale, -clip, clip)
        base = Zt @ b + intercept
        predictions.append(base)
        residual = y[fold.test] - base
        for j in range(Z.shape[1]):
            z = np.ascontiguousarray(Zt[:, j])
            u = residual + b[j] * z
            own = u @ z
            for _ in range(importance.perm_repeats):
                2.0 * b[j] * (own - u @ rng.permutation(z))
    oos = np.concatenate([fold.test for fold in folds])
    n_oos = len(oos)
    _spearman(np.concatenate(predictions), _ranks(y[oos]) - (n_oos + 1) / 2)
    Z, _, _ = _standardize(np.array(X), clip)
    b, _ = _ridge(Z, y, alpha)
    Z -= Z.mean(0)
    np.abs(b) * np.abs(Z, out=Z).mean(0)
    del Z
    y_ranks = _ranks(y) - (len(y) + 1) / 2
    [_spearman(X[:, j], y_ranks) for j in range(X.shape[1])]
    size = min(len(X), importance.bootstrap_sample_size)
    for _ in range(importance.bootstrap_rounds):
        rows = rng.integers(0, len(X), size)
        Zb, _, _ = _standardize(X[rows], clip)
        b, _ = _ridge(Zb, y[rows], alpha)
        Zb -= Zb.mean(0)
        np.abs(b) * np.abs(Zb, out=Zb).mean(0)


def floor(X, y, entry, exit_time):
    """The numpy floor with one BLAS thread, as the project runs (its best setting too)."""
    with THREADPOOLS.limit(limits=1, user_api="blas"):
        numpy_floor(X, y, entry, exit_time)


def _pipeline(alpha: float, clip: float) -> Pipeline:
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("clip", FunctionTransformer(np.clip, kw_args={"a_min": -clip, "a_max": clip})),
            ("ridge", Ridge(alpha=alpha)),
        ]
    )


def peer(X, y, entry, exit_time):
    """The same statistics with sklearn, shap and scipy's own tools, as a seed project has them."""
    params, importance = ModelParams(), ImportanceParams()
    folds = evaluated_folds(entry, exit_time, X.shape[1], params)
    fold_models = [_pipeline(params.ridge_alpha, params.clip_z).fit(X[f.train], y[f.train]) for f in folds]
    oos = np.concatenate([f.test for f in folds])
    prediction = np.concatenate([m.predict(X[f.test]) for m, f in zip(fold_models, folds, strict=True)])
    stats.spearmanr(prediction, y[oos])
    model = _pipeline(params.ridge_alpha, params.clip_z).fit(X, y)
    Z = model[:-1].transform(X)
    explanation = shap.Explainer(model.named_steps["ridge"], Z)(Z)
    np.abs(explanation.values).mean(0)
    for m, f in zip(fold_models, folds, strict=True):
        permutation_importance(
            m,
            X[f.test],
            y[f.test],
            scoring="neg_mean_squared_error",
            n_repeats=importance.perm_repeats,
            random_state=importance.seed,
        )
    [stats.spearmanr(X[:, j], y).statistic for j in range(X.shape[1])]
    rng = np.random.default_rng(importance.seed)
    size = min(len(X), importance.bootstrap_sample_size)
    for _ in range(importance.bootstrap_rounds):
        rows = rng.integers(0, len(X), size)
        refit = _pipeline(params.ridge_alpha, params.clip_z).fit(X[rows], y[rows])
        Zb = refit[:-1].transform(X[rows])
        np.abs((Zb - Zb.mean(0)) * refit.named_steps["ridge"].coef_).mean(0)


def measured(fn: Callable, *args) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn(*args)
    return time.process_time() - cpu, time.perf_counter() - wall


def peak_bytes(fn: Callable, *args) -> int:
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


SLOW = ("peer", "default_blas")


def measure_case(p: int, n: int, repeats: int, slow_repeats: int) -> dict[str, float]:
    data = synthetic(n, p)
    matrix = data[0].nbytes
    peaks = {"project": peak_bytes(project, *data), "floor": peak_bytes(floor, *data)}
    contenders = {"project": project, "floor": floor, "default_blas": project_default_blas, "peer": peer}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # each goes first in turn
            if name not in SLOW or r < slow_repeats:
                samples[name].append(measured(contenders[name], *data))
    cpu = {name: statistics.median(s[0] for s in runs) for name, runs in samples.items()}
    wall = {name: statistics.median(s[1] for s in runs) for name, runs in samples.items()}
    return {
        "features": p,
        "trades": n,
        "project CPU s": cpu["project"],
        "floor CPU s": cpu["floor"],
        "CPU ratio": cpu["project"] / cpu["floor"],
        "project wall s": wall["project"],
        "floor wall s": wall["floor"],
        "wall ratio": wall["project"] / wall["floor"],
        "peer CPU s": cpu["peer"],
        "peer / project": cpu["peer"] / cpu["project"],
        "default BLAS CPU s": cpu["default_blas"],
        "default BLAS / project": cpu["default_blas"] / cpu["project"],
        "default BLAS wall / project": wall["default_blas"] / wall["project"],
        "us per trade": 1e6 * cpu["project"] / n,
        "peak x matrix": peaks["project"] / matrix,
        "floor peak x matrix": peaks["floor"] / matrix,
    }


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
    shap_values = np.abs(base + rng.normal(scale=0.5, size=(n_runs, n_features)))
    ranks = (-shap_values).argsort(axis=1).argsort(axis=1) + 1
    history = pd.DataFrame(
        {
            "run_key": np.repeat(runs, n_features),
            "feature": np.tile([f"noise_{j:02d}" for j in range(n_features)], n_runs),
            "rank": ranks.ravel(),
            "coef": (base + rng.normal(scale=0.3, size=(n_runs, n_features))).ravel(),
            "shap_mean_abs": shap_values.ravel(),
            "ic": (0.02 * base + rng.normal(scale=0.03, size=(n_runs, n_features))).ravel(),
        }
    )
    return history, ranges, pd.Series(rng.normal(scale=0.05, size=n_runs), index=runs)


def stability_analytics(history, ranges, performance):
    per_feature_stability(history, 5)
    summarize_stability(history, ranges, 5, 0.0)


def alpha_analytics(trades, market, history, ranges, performance):
    params = EvidenceParams()
    as_of = pd.Timestamp(market.end, tz="UTC") + pd.Timedelta(days=30)
    evidence = feature_evidence(period_ic(trades, market.features, params, as_of), params)
    topk = pd.Series(0.0, index=market.features)
    alpha_table(evidence, history, ranges, performance, topk)


def history_analytics(repeats: int) -> None:
    history = synthetic_history(1000, 100)
    stability = [measured(stability_analytics, *history)[0] for _ in range(repeats)]
    market = SimulatedMarket(start="2010-01-01", end="2019-12-31", per_day=400, n_symbols=200, n_noise=100)
    trades = simulated_trades(market, seed=0)
    alpha = [measured(alpha_analytics, trades, market, *history) for _ in range(repeats)]
    print(
        "\n## History analytics (median of repeats)\n\n"
        f"- stability (per feature + summary) over 1,000 runs x 100 features: "
        f"{statistics.median(stability):.3f} s CPU\n"
        f"- alpha evidence of 100 features over {len(trades):,} distinct trades in ten years "
        f"(522 weekly periods) and 1,000 runs: {statistics.median(a[0] for a in alpha):.2f} s CPU, "
        f"{statistics.median(a[1] for a in alpha):.2f} s wall"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="FEATURESxTRADES")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slow-repeats", type=int, default=1, help="turns of the peer and the default BLAS")
    parser.add_argument("--no-history", action="store_true", help="skip the history analytics")
    args = parser.parse_args()
    rows = []
    for case in args.cases:
        p, n = (int(part) for part in case.split("x"))
        rows.append(measure_case(p, n, args.repeats, min(args.slow_repeats, args.repeats)))
        print(f"measured {p} features x {n} trades", flush=True)
    table = pd.DataFrame(rows)
    print(
        f"\n## Model + importance per run (medians of {args.repeats} interleaved repeats, the peer's and "
        f"the default BLAS threads' of {min(args.slow_repeats, args.repeats)}; ratios of the medians)\n"
    )
    shown = table.astype({"features": str}).assign(trades=table["trades"].map("{:,}".format))
    print(shown.to_markdown(index=False, floatfmt=".2f"))
    print("\n## Growth with trades (CPU per trade relative to the smallest size; 1.0 = linear)\n")
    for p, group in table.groupby("features"):
        base = group["us per trade"].iloc[0]
        print(
            f"- {p} features: "
            + ", ".join(
                f"{n:,}: {u / base:.2f}" for n, u in zip(group["trades"], group["us per trade"], strict=True)
            )
        )
    if not args.no_history:
        history_analytics(min(args.repeats, 3))


if __name__ == "__main__":
    main()
