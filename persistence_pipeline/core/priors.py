"""What the next model starts from: empirical-Bayes priors of coefficients and curriculum sample weights.

Priors (empirical Bayes, in raw units). A run's own estimate of a feature's coefficient, per unit of
the feature (own_coef_raw: return per unit, so it means the same effect in the next run whatever
that run's feature scale; from the ridge without the prior, so no earlier run is counted twice),
comes with its bootstrap standard error s_r (own_coef_raw_std). Over the runs whose
windows do not overlap (they share no trades, so their errors are independent; core/stability.py),
in time order r = 1..R, each run's precision 1 / s_r^2 is discounted by decay^(R - r):
    mean        m = sum w_r c_r / sum w_r,    w_r = decay^(R - r) / s_r^2
    prior var   tau^2 = tau_between^2 + 1 / sum w_r
where tau_between^2 is the DerSimonian-Laird moment estimate of how much the true coefficient moves
between runs, max(0, (Q - (R - 1)) / (sum v - sum v^2 / sum v)), Q = sum v_r (c_r - m_v)^2 with the
undiscounted v_r = 1 / s_r^2 (0 with one run: until a second run shows movement, the prior is the
first run's estimate with its own error). The next model shrinks toward m with penalty
sigma^2 / tau^2 (core/model.py): a coefficient estimated precisely and stable across runs pulls hard,
one that flips between runs pulls weakly, and the pull is weighed against the next run's own n. A
prior is refused (ValueError) for decay outside (0, 1]: 0 would keep the newest run only (and
nothing of a feature it lacks), > 1 would weigh the oldest run most.

Every run counts (decay 1, the default). Without a discount the mean is the fixed-effect pool of ALL
the runs by precision, and with effects that persist (tau_between 0) the warm ridge on the next run
is the ridge on all the runs' trades together: exactly so for linear-Gaussian runs whose features
are uncorrelated within each run (persistence_pipeline_tests/test_priors.py). Where effects
move, the discount is the data's, not a fixed one: tau_between widens the prior by as much as the
runs disagree beyond their errors, and the next run's own trades decide. A fixed discount did
neither: decay 0.5 threw away precision where effects persist and, where they flip, weighed the
newest (opposite) run most.

Simulated, 20 seeds x 7 quarters, warm against cold on the quarter and against a cold ridge on all
earlier quarters' trades plus the quarter's (all-history), same trades, folds and alpha
(benchmarks/walk_forward.py), decay 0.5 -> 1:
    persistent    warm - cold +0.0155 -> +0.0174 [+0.0111, +0.0237]; all-history - warm
                  +0.0100 [+0.0063, +0.0136] -> +0.0082 [+0.0048, +0.0115]: warm recovers 68% of the
                  history's gain over cold (61% with decay 0.5)
    random walk   (IC steps of sd 0.03 a quarter) warm - cold +0.0236 -> +0.0229; all-history - warm
                  +0.0057 -> +0.0065
    flipping      (the sign changes every quarter) warm - cold -0.0057 [-0.0097, -0.0018] ->
                  -0.0021 [-0.0072, +0.0031]; all-history - warm -0.0068 [-0.0124, -0.0012]
    null          warm - cold -0.0031 -> -0.0032
On linear-Gaussian runs (eight runs of 300 trades, persistent effects) warm recovers 96% of the
history's gain (87% with decay 0.5). Two measured causes keep it below the all-history ridge on the
simulated market. (1) The moment estimate tau_between, truncated at 0, is positive for a third to a
half of the features even where nothing moves (Q / (R - 1) is 1.1-1.2 on noise features: 20
bootstrap rounds make the errors noisy), which weakens their priors. tau_between forced to 0 closed
a further 0.001 of the gap (0.0024 on a 30-symbol market) but lost 0.010 where effects flip; keeping
it only where Cochran's Q is significant at 5% closed the same 0.001 and lost 0.003 where effects
flip (40 seeds: a test over two or three runs rarely sees a flip), so it stays as it is. (2) A prior
is per feature: it cannot carry the correlations between one run's features, which on the simulated
market are mostly chance (8 symbols, slowly moving features: a mean variance inflation of 1.9 within
a quarter, 1.1 over all quarters); the ridge on all the trades averages them away, a per-feature
pool of each run's estimates cannot (with tau_between 0 and exact least-squares errors its
coefficient error is 1.75 times the all-history fit's). Closing that would take each run's X'X and
X'y stored, not per-feature estimates.

With min_z > 0 only an informative prior is used: |mean| >= min_z x sd (2: an interval that
excludes 0); the other features are fit as cold (ridge_alpha toward 0). The default, 0, uses every
prior, because most of what a prior adds is knowing that a feature's effect stays near 0: on
simulated markets with persistent effects every prior gained +0.0174 OOS rank IC over cold (20
seeds, cold +0.0142), informative ones only +0.0011 (not significant). Where effects do not persist
(the embedded stocks, 30 quarters 2016-2023, centred features) every prior cost -0.0108 (95%
interval -0.065..+0.043; -0.0014 with decay 0.5), not significant either way; min_z = 2 or no warm
start is the setting for such data (benchmarks/walk_forward.py).
`prior_coef` and `prior_strength` restate the prior in the as-of run's standardized units (the
penalty it would carry there), for reading.

Curriculum. Regimes are point-in-time: a trade's volatility tercile (its entry-time volatility
feature, cut at the terciles of the latest run's training trades) x the sign of its entry-time trend
feature, e.g. `vol_high/trend_down`. A regime's error is the latest run's out-of-sample MSE there
divided by the variance of the realized returns there (1 - R^2: the share of the regime's variance
the model failed to explain, free of the regime's volatility scale). Its error relative to the
overall error, clipped to [min_weight, max_weight], is shrunk toward 1 by the regime's sample size,
1 + (clipped - 1) * n / (n + shrinkage_trades), and becomes the regime's sample weight for the next
run; a regime with fewer than two OOS trades weighs 1. Regimes the model explains worst weigh more.
The shrinkage is because the raw ratio is noise at the sizes seen: a median of 12 OOS trades per
regime, 15% of weights at a clip bound, and no correlation of one run's weights with the next's
(issue 12: lag-1 rank correlation -0.06, p = 0.48); with the default of 100 trades a regime of 12
keeps 11% of its deviation from 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from persistence_pipeline.core.model import RidgePrior

VOLATILITY_LABELS = ("vol_low", "vol_mid", "vol_high")


@dataclass(frozen=True)
class PriorParams:
    decay: float = 1.0
    min_z: float = 0.0

    def __post_init__(self):
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"prior_decay must be in (0, 1], got {self.decay}")
        if self.min_z < 0:
            raise ValueError(f"prior_min_z must be >= 0, got {self.min_z}")


@dataclass(frozen=True)
class CurriculumParams:
    volatility_feature: str = "volatility_20"
    trend_feature: str = "momentum_20"
    min_weight: float = 0.5
    max_weight: float = 2.0
    shrinkage_trades: float = 100.0


PRIOR_COLUMNS = ["feature", "prior_coef_raw", "prior_sd_raw", "n_runs", "tau_between", "informative"]


def empirical_bayes_prior(
    coef: np.ndarray, se: np.ndarray, decay: float, age: np.ndarray | None = None
) -> tuple[float, float, float]:
    """(mean, sd, tau_between) of one feature's prior from its runs' raw coefficients and standard
    errors in time order (module docstring); `age`: each run's age in pooled runs (0 the newest of
    ALL pooled runs; by default the feature's own runs are taken as the newest)."""
    coef, se = np.asarray(coef, dtype="float64"), np.asarray(se, dtype="float64")
    precision = 1.0 / se**2
    ages = np.arange(len(coef) - 1, -1, -1, dtype="float64") if age is None else np.asarray(age, "float64")
    discounted = precision * decay**ages
    mean = float(discounted @ coef / discounted.sum())
    between = 0.0
    if len(coef) > 1:
        pooled = precision @ coef / precision.sum()
        q = float(precision @ (coef - pooled) ** 2)
        between = max(0.0, (q - (len(coef) - 1)) / (precision.sum() - (precision**2).sum() / precision.sum()))
    return mean, float(np.sqrt(between + 1.0 / discounted.sum())), float(np.sqrt(between))


def empirical_bayes_priors(history: pd.DataFrame, params: PriorParams) -> pd.DataFrame:
    """history: rows (run_key, feature, own_coef_raw, own_coef_raw_std) of the independent runs, the
    runs in time order. A run's suspected leaks (`suspect`, core/leakage.py) feed no prior. Per feature
    with at least one usable run (finite coefficient, positive error, not suspect):
    prior_coef_raw, prior_sd_raw, n_runs, tau_between, informative (|mean| >= min_z sd: the
    next model uses only these)."""
    suspect = (
        history["suspect"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        if "suspect" in history.columns
        else np.zeros(len(history), dtype=bool)
    )
    usable = history[
        np.isfinite(history["own_coef_raw"].astype("float64"))
        & (history["own_coef_raw_std"].astype("float64") > 0)
        & ~suspect
    ]
    order = {key: i for i, key in enumerate(pd.unique(history["run_key"]))}
    newest = len(order) - 1
    rows = []
    for feature, runs in usable.groupby("feature", sort=True):
        # a run's age counts every pooled run after it, also those that lack this feature
        age = newest - runs["run_key"].map(order).to_numpy(dtype="float64")
        mean, sd, between = empirical_bayes_prior(
            runs["own_coef_raw"].to_numpy(), runs["own_coef_raw_std"].to_numpy(), params.decay, age
        )
        rows.append(
            {
                "feature": feature,
                "prior_coef_raw": mean,
                "prior_sd_raw": sd,
                "n_runs": len(runs),
                "tau_between": between,
                "informative": bool(abs(mean) >= params.min_z * sd),
            }
        )
    return pd.DataFrame(rows, columns=PRIOR_COLUMNS)


def ridge_prior(priors: pd.DataFrame, features: list[str]) -> RidgePrior:
    """The prior the next model is shrunk toward, aligned with its features: the informative
    priors only (rows without the flag, stored before it existed, count as not)."""
    informative = priors[priors["informative"].astype("boolean").fillna(False).astype(bool)]
    aligned = informative.set_index("feature").reindex(features)
    return RidgePrior(
        aligned["prior_coef_raw"].to_numpy(dtype="float64"), aligned["prior_sd_raw"].to_numpy(dtype="float64")
    )


def restated_priors(priors: pd.DataFrame, scale: pd.Series, label_variance: float) -> pd.DataFrame:
    """The priors with prior_coef (per sd of the feature) and prior_strength (the ridge penalty
    sigma^2 / (sd_raw * scale)^2) in the standardized units of a run whose features have sd `scale`
    (by feature) and whose labels have variance `label_variance`."""
    feature_sd = scale.reindex(priors["feature"]).to_numpy(dtype="float64")
    return priors.assign(
        prior_coef=priors["prior_coef_raw"].to_numpy() * feature_sd,
        prior_strength=label_variance / (priors["prior_sd_raw"].to_numpy() * feature_sd) ** 2,
    )


def volatility_cuts(volatility: np.ndarray) -> tuple[float, float]:
    """The tercile cut points of a volatility sample."""
    low, high = np.quantile(np.asarray(volatility, dtype="float64"), [1 / 3, 2 / 3])
    return float(low), float(high)


def regimes(volatility: np.ndarray, trend: np.ndarray, cuts: tuple[float, float]) -> np.ndarray:
    """Regime label per trade from entry-time volatility and trend, with given tercile cuts."""
    tercile = np.searchsorted(np.asarray(cuts), np.asarray(volatility, dtype="float64"), side="right")
    direction = np.asarray(trend, dtype="float64") >= 0
    return np.array(
        [
            f"{VOLATILITY_LABELS[t]}/{'trend_up' if up else 'trend_down'}"
            for t, up in zip(tercile, direction, strict=True)
        ],
        dtype=object,
    )


def relative_error(prediction: np.ndarray, realized: np.ndarray) -> float | None:
    """MSE / variance of the realized values (1 - R^2); None below two values or for constant values."""
    if len(realized) < 2 or np.var(realized) == 0:
        return None
    return float(np.mean((realized - prediction) ** 2) / np.var(realized))


def regime_weights(
    regime: np.ndarray, prediction: np.ndarray, realized: np.ndarray, params: CurriculumParams
) -> pd.DataFrame:
    """Per regime (all six, even those without trades): n_oos, oos_error (MSE / variance), weight."""
    regime, prediction, realized = (
        np.asarray(regime),
        np.asarray(prediction, float),
        np.asarray(realized, float),
    )
    overall = relative_error(prediction, realized)
    rows = []
    for label in [f"{v}/{t}" for v in VOLATILITY_LABELS for t in ("trend_down", "trend_up")]:
        mask = regime == label
        error = relative_error(prediction[mask], realized[mask])
        n = int(mask.sum())
        clipped = (
            1.0
            if error is None or not overall
            else float(np.clip(error / overall, params.min_weight, params.max_weight))
        )
        kept = n / (n + params.shrinkage_trades) if n + params.shrinkage_trades > 0 else 0.0
        weight = 1.0 + (clipped - 1.0) * kept
        rows.append({"regime": label, "n_oos": n, "oos_error": error, "weight": weight})
    return pd.DataFrame(rows)


def curriculum_sample_weights(trades: pd.DataFrame, weights: pd.DataFrame) -> np.ndarray:
    """Per trade, the stored weight of its regime (regimes cut as stored with the weights)."""
    first = weights.iloc[0]
    labels = regimes(
        trades[first["volatility_feature"]].to_numpy(),
        trades[first["trend_feature"]].to_numpy(),
        (float(first["volatility_cut_low"]), float(first["volatility_cut_high"])),
    )
    return pd.Series(labels).map(weights.set_index("regime")["weight"]).fillna(1.0).to_numpy(dtype="float64")


def oos_regime_weights(
    trades: pd.DataFrame, features: list[str], oos: pd.DataFrame, params: CurriculumParams
) -> pd.DataFrame | None:
    """Curriculum weights per regime from a run's out-of-sample predictions (`oos`: trade_id,
    prediction, realized), with the regime definition beside them; None when the regime features
    are not among the run's features."""
    if not {params.volatility_feature, params.trend_feature} <= set(features):
        return None
    cuts = volatility_cuts(trades[params.volatility_feature])
    scored = trades.merge(oos, on="trade_id")
    labels = regimes(scored[params.volatility_feature], scored[params.trend_feature], cuts)
    weights = regime_weights(labels, scored["prediction"].to_numpy(), scored["realized"].to_numpy(), params)
    return weights.assign(
        volatility_feature=params.volatility_feature,
        trend_feature=params.trend_feature,
        volatility_cut_low=cuts[0],
        volatility_cut_high=cuts[1],
    )
