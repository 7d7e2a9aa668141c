"""Evidence that a feature predicts trade returns, accrued per trade and per unit of time.

A run is not a unit of evidence: the nightly schedule retrains on a trailing 90-day window, so
consecutive runs share about 97% of their trades, and counting runs (or their ICs) counts the same
trades again. The evidence here comes from the DISTINCT trades stored as of a date, each once,
whichever runs loaded them: one run over two years, eight quarterly runs and 700 nightly runs over
the same trades give the same figures.

1. The IC series. Trades are grouped into non-overlapping periods of `period_days` by entry time
   (UTC; periods start on Mondays). A period counts as of a date only once it has ended and every
   trade entered in it has exited (its returns are known): a period read earlier would hold only
   its quickly closed trades, a different sample from the one later runs see. Periods are the unit
   because trades of one period share market moves (a long and a short entered the same day see
   the same move with opposite signs), so trades are not independent within a period; periods are
   much closer to independent, and what dependence is left (holding periods that reach into the
   next period, slowly changing features) is what the Newey-West errors below are for.

   Neutral to side and strategy (the default, `neutral`). A period's IC is the Spearman
   correlation of the feature with the trade return WITHIN each side x strategy cell (cells of at
   least MIN_CELL_TRADES trades in which both vary), averaged over the cells by their trades; the
   period counts with at least `min_trades_per_period` trades in such cells. Pooled over sides and
   strategies, the IC answers another question: which trades were longs (in a rising market, longs
   earn more) and which strategy took them. On the embedded trades 2013-2023 (longs +0.92% on
   average, shorts -0.84%) the pooled IC of `rsi_14` is +0.062 while it is -0.125 within longs and
   -0.120 within shorts (Simpson's paradox), and the side itself (`direction`) was the second
   "alpha". The pooled IC stays beside it (`pooled_ic_*`). `direction` and the `strategy@...`
   indicators are constant within a cell: their only evidence is the pooled one, they are
   reported apart (`indicator`) and are no hypothesis and get no score.

   The period adapts to the trades' density unless set (`period_days`): the shortest of 7, 14,
   28, 56 and 91 days in which at least half the periods the trades span hold
   `min_trades_per_period` usable trades, so that a dense log gets weeks and a single
   instrument's log longer periods (PERIOD_CHOICES; `adaptive_period_days`).

2. Significance of the mean IC: the mean of the series with a Newey-West (1987) standard error
   (Bartlett weights), t = mean / se, two-sided p from Student's t; Benjamini-Hochberg q-values
   across the features tested together. The lag covers the holding periods:
   L = max(ceil(q99 holding days / period_days), ceil(1.3 sqrt(T))), at most T - 2. The second
   term is the bandwidth Lazarus, Lewis, Stock and Watson (2018, "HAR inference: recommendations
   for practice", JBES) recommend for dependence the holding periods do not explain: a slowly
   moving feature read on few symbols gives an IC series that wanders for weeks. A long lag in a
   short series biases the textbook estimator down (a nominal 5% test rejected 10% of the time at
   T = 20 on independent data, 19% with autocorrelation 0.6), so `hac_coefficient` rescales it
   to be unbiased under independent errors and uses Satterthwaite degrees of freedom (the
   small-sample correction of Bell and McCaffrey 2002, applied to the Newey-West weights):
   measured 4.4% at a nominal 5% at T = 104, 3.2-4.5% at T = 13-52 on independent data.

3. Decay: the trend of the sign-aligned IC series (IC * sign of its mean) on time in years, by
   ordinary least squares with the same corrected Newey-West test of the slope. Decay is judged
   only where the mean IC's 95% interval excludes zero (a trend in noise is no decay): `decaying`
   = such a feature with a negative slope whose one-sided p-value is below `decay_level` (5%) and
   a positive fitted IC at the first period. The half-life (days from the first period for the
   fitted IC to halve) is given only for a decaying feature. Its power: `decay_mde` is the
   smallest fade over the series' span (slope x span) the test finds with 80% probability,
   (t_(1 - decay_level) + t_0.8) x slope se x span. `decay_verdict` says 'decaying', 'not
   decaying' (the mean IC is distinguishable from zero and the test would have seen it lose half
   its level over the span: decay_mde <= |ic_mean| / 2), or 'cannot tell'. At the embedded data's
   density (about 25 trades a week on 6 symbols) a decade of weeks gives decay_mde of 0.15-0.3,
   larger than any feature's IC: 'cannot tell' for all, which is the honest answer.

4. Persistence, continuous: the IC at the latest period as a share of the mean IC, the posterior
   mean under a uniform prior on [0, 1] given the trend's estimate and standard error (a normal
   truncated to [0, 1]; `persistence_posterior`), given the mean IC (its own error is in the
   score's effect factor; counting it here too made persistence rise again as a fade deepened):
   a precisely measured trend gives its own ratio (clipped), a trend the data cannot measure gives
   0.5, not 1 (a fully faded feature kept a
   median persistence of 0.94 at the embedded noise under the earlier shrinkage toward 1), and
   nothing jumps at a p threshold. `ic_now` is persistence x the mean IC. A series too short for
   a trend (MIN_PERIODS_FOR_TREND) has persistence 0.5.

5. alpha_score = significance * persistence * effect, in [0, 1]:
     significance = 1 - q                     (how sure we are that the IC is not zero)
     effect       = 1 - exp(-d / reference_ic), d the distance from zero of the IC's 95% interval
                    (the smallest IC the data support; 0 when the interval holds zero; 0.63 at the
                    reference IC)
   Each factor is in [0, 1] and increases with its evidence or effect, so the score does too; a
   product means a feature needs all three: a large IC no one can tell from noise scores low, and
   so does a reliable but tiny or faded one. The effect is the interval's bound, not the mean IC:
   a noise feature's mean IC over a short series is often as large as a real one's (measured with
   |ic_mean|: 1% of noise features scored above 0.3), its bound is 0 in 95% of cases. Run-level
   figures (top-k frequency, importance share, rank stability) are reported beside the score but
   are not in it: they come from runs that share trades, and would put that overlap back in.

6. Power of the mean test: `ic_mde`, the smallest |IC| the two-sided 5% test finds with 80%
   probability, (t_0.975 + t_0.8) x its standard error; `ic_verdict` 'nonzero' (q < 0.05),
   'small' (not nonzero and the 95% interval within +-`reference_ic`), or 'cannot tell'.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.linalg
from scipy import stats

from persistence_pipeline.core.dataset import realized_by
from persistence_pipeline.core.design import is_indicator
from persistence_pipeline.core.metrics import rank_ic_block

# weekly periods start on Mondays: 1970-01-05 was one
PERIOD_ANCHOR = pd.Timestamp("1970-01-05", tz="UTC")
MICROS_PER_DAY = 86_400_000_000
ANCHOR_MICROS = PERIOD_ANCHOR.value // 1_000  # Timestamp.value counts nanoseconds
DAYS_PER_YEAR = 365.25
# the shortest IC series that supports the test of its mean, and the trend (decay) test
MIN_PERIODS_FOR_TEST = 3
MIN_PERIODS_FOR_TREND = 4


PERIOD_CHOICES = (7, 14, 28, 56, 91)  # the periods an adaptive series chooses from, in days
PERIOD_SHARE = 0.5  # ... the shortest of them in which at least this share of periods is usable
MIN_CELL_TRADES = 3  # the fewest trades of one side x strategy cell whose IC enters a period's
SIGNIFICANCE_LEVEL = 0.05  # the q-value below which a mean IC is called nonzero
POWER = 0.8  # the power at which the smallest detectable effects are stated


@dataclass(frozen=True)
class EvidenceParams:
    """period_days: None adapts the period to the trades' density (adaptive_period_days);
    neutral: each period's IC within side x strategy cells (False: pooled over all trades)."""

    period_days: int | None = None
    min_trades_per_period: int = 10
    decay_level: float = 0.05
    reference_ic: float = 0.05
    neutral: bool = True

    def __post_init__(self):
        if self.period_days is not None and self.period_days < 1:
            raise ValueError(
                f"ic_period_days must be at least 1 day (or None: adapt), got {self.period_days}"
            )


@dataclass(frozen=True)
class PeriodIC:
    """The IC series of every feature: `ic` (periods x features, NaN where a period has too few
    trades or a constant feature or return; within side x strategy cells when `neutral`),
    `n_trades` (the trades behind each IC), `pooled` (the IC over all the period's trades), the
    period length in days, and the HAC lag the holding periods call for."""

    ic: pd.DataFrame
    n_trades: pd.DataFrame
    holding_lag: int
    pooled: pd.DataFrame
    period_days: int
    neutral: bool

    def head(self, n_periods: int) -> PeriodIC:
        """The series up to its first `n_periods` periods (the same series read earlier)."""
        return replace(
            self,
            ic=self.ic.iloc[:n_periods],
            n_trades=self.n_trades.iloc[:n_periods],
            pooled=self.pooled.iloc[:n_periods],
        )

    def long(self) -> pd.DataFrame:
        """One row per feature and period with an IC: feature, period_start, n_trades, ic, pooled_ic."""
        frames = {"n_trades": self.n_trades, "ic": self.ic, "pooled_ic": self.pooled}
        stacked = {
            name: frame.rename_axis(index="period_start", columns="feature").stack(future_stack=True)
            for name, frame in frames.items()
        }
        rows = pd.DataFrame(stacked).dropna(subset=["ic", "pooled_ic"], how="all").reset_index()
        return rows[["feature", "period_start", "n_trades", "ic", "pooled_ic"]].sort_values(
            ["feature", "period_start"], kind="stable", ignore_index=True
        )


def usable_trades(period: np.ndarray, cell: np.ndarray, neutral: bool) -> pd.Series:
    """Per period: the trades an IC can rest on, those in cells of at least MIN_CELL_TRADES
    trades when `neutral`, all of them otherwise."""
    counts = pd.DataFrame({"period": period, "cell": cell if neutral else 0}).value_counts()
    counts = counts[counts >= MIN_CELL_TRADES] if neutral else counts
    return counts.groupby(level="period").sum()


def series_note(series: PeriodIC) -> str:
    """What the IC series is, in words (the run's metadata)."""
    basis = "within side x strategy cells" if series.neutral else "pooled over sides and strategies"
    return f"{len(series.ic)} periods of {series.period_days} days, IC {basis}"


def adaptive_period_days(entry_time: pd.Series, cell: np.ndarray, min_trades: int, neutral: bool) -> int:
    """The shortest of PERIOD_CHOICES in which at least PERIOD_SHARE of the periods the trades
    span hold `min_trades` usable trades (`usable_trades`); the longest when none does: weeks for
    a dense log, eight or thirteen weeks for a single instrument's."""
    if len(entry_time) == 0:
        return PERIOD_CHOICES[0]
    for days in PERIOD_CHOICES:
        period = period_numbers(entry_time, days)
        spanned = period.max() - period.min() + 1
        if (usable_trades(period, cell, neutral) >= min_trades).sum() >= PERIOD_SHARE * spanned:
            return days
    return PERIOD_CHOICES[-1]


def trade_cells(trades: pd.DataFrame) -> np.ndarray:
    """Each trade's side x strategy cell as an integer code (one cell for trades without a side
    or strategy column; a missing side or strategy is a value of its own)."""
    codes = np.zeros(len(trades), dtype="int64")
    for column in ("side", "strategy"):  # each factorized alone: a MultiIndex of them builds tuples
        if column in trades.columns:
            own = trades[column].astype(str).factorize(use_na_sentinel=False)[0]
            codes = pd.factorize(codes * (own.max(initial=0) + 1) + own)[0]
    return codes


def period_numbers(entry_time: pd.Series, period_days: int) -> np.ndarray:
    """The period each entry time falls in, as an integer: whole periods since PERIOD_ANCHOR (UTC).
    Integers, not the periods' tz-aware start times: numpy receives those from pandas as object
    arrays of Timestamps, whose conversion, sorting and grouping took a fifth of the evidence's time
    (issue 26)."""
    micros = pd.DatetimeIndex(pd.to_datetime(entry_time, utc=True)).as_unit("us").asi8
    return (micros - ANCHOR_MICROS) // (period_days * MICROS_PER_DAY)


def period_start_index(numbers: np.ndarray, period_days: int) -> pd.DatetimeIndex:
    """The start (UTC midnight) of each numbered period (period_numbers)."""
    micros = ANCHOR_MICROS + np.asarray(numbers, dtype="int64") * (period_days * MICROS_PER_DAY)
    return pd.DatetimeIndex(micros.astype("datetime64[us]")).tz_localize("UTC")


def period_starts(entry_time: pd.Series, period_days: int) -> pd.Series:
    """The start (UTC midnight) of the period each entry time falls in."""
    starts = period_start_index(period_numbers(entry_time, period_days), period_days)
    return pd.Series(starts, index=entry_time.index, name=entry_time.name)


def holding_lag(entry_time: pd.Series, exit_time: pd.Series, period_days: int) -> int:
    """How many periods a trade's holding reaches into: ceil of the 99th percentile holding time
    over the period length (0 for no trades)."""
    if len(entry_time) == 0:
        return 0
    held = (pd.to_datetime(exit_time, utc=True) - pd.to_datetime(entry_time, utc=True)).dt.total_seconds()
    q99_days = float(np.quantile(held.to_numpy(dtype="float64"), 0.99)) / 86_400
    return max(0, math.ceil(q99_days / period_days))


def _block_ic(x: np.ndarray, y: np.ndarray, min_trades: int) -> tuple[np.ndarray, np.ndarray]:
    """Spearman IC of each column of one period's feature block with its returns, and the number of
    trades with a value (NaN IC below `min_trades` or for a constant column or return). The columns
    without a missing value are ranked together; a column with one, on its trades with a value."""
    missing = np.isnan(x)
    n = len(y) - missing.sum(axis=0)
    ic = np.full(x.shape[1], np.nan)
    partial = missing.any(axis=0)
    whole = np.flatnonzero(~partial) if len(y) >= min_trades else np.empty(0, dtype="int64")
    if whole.size:
        ic[whole] = rank_ic_block(x if whole.size == x.shape[1] else x[:, whole], y)
    for j in np.flatnonzero(partial & (n >= min_trades)):
        keep = ~missing[:, j]
        ic[j] = rank_ic_block(x[keep, j][:, None], y[keep])[0]
    return ic, n


def _neutral_block(
    x: np.ndarray, y: np.ndarray, segments: list[tuple[int, int]], min_trades: int
) -> tuple[np.ndarray, np.ndarray]:
    """One period's IC within its side x strategy cells (the rows x[a:b] of each of the period's
    `segments`): each cell's Spearman IC (cells of at least MIN_CELL_TRADES trades in which the
    column and the return vary) averaged by the cell's trades, and the trades behind it (NaN IC
    below `min_trades` of them)."""
    total = np.zeros(x.shape[1])
    weighted = np.zeros(x.shape[1])
    for a, b in segments:
        ic, n = _block_ic(x[a:b], y[a:b], MIN_CELL_TRADES)
        used = np.isfinite(ic)
        total += np.where(used, n, 0)
        weighted += np.where(used, n * np.nan_to_num(ic), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total >= min_trades, weighted / total, np.nan), total


def complete_periods(trades: pd.DataFrame, as_of_end: pd.Timestamp, period_days: int) -> pd.Series:
    """Per trade: whether its period is complete as of `as_of_end` (exclusive): the period has
    ended and every trade entered in it has exited, with a return, before `as_of_end`."""
    entry = trades["entry_time"]
    number = period_numbers(entry, period_days)
    if len(number) == 0:
        return pd.Series(np.zeros(0, dtype=bool), index=trades.index, name=entry.name)
    offset = number - number.min()  # small integers: counted, not sorted or grouped
    pending = np.bincount(offset, weights=(~realized_by(trades, as_of_end)).to_numpy(dtype="float64")) > 0
    next_start = period_start_index(np.arange(1, len(pending) + 1) + number.min(), period_days)
    complete = (next_start <= as_of_end) & ~pending
    return pd.Series(complete[offset], index=trades.index, name=entry.name)


def _runs(keys: list[np.ndarray]) -> list[tuple[int, int]]:
    """The slices of equal (sorted) keys: (start, end) where any of them changes (none without
    rows, hence the zip that is not strict)."""
    changed = np.zeros(len(keys[0]), dtype=bool)
    changed[:1] = True
    for key in keys:
        changed[1:] |= key[1:] != key[:-1]
    starts = np.flatnonzero(changed).tolist()
    return list(zip(starts, [*starts[1:], len(changed)], strict=False))


def period_ic(
    trades: pd.DataFrame, features: list[str], params: EvidenceParams, as_of_end: pd.Timestamp
) -> PeriodIC:
    """Each feature's Spearman IC with `return` per complete period of entry time as of
    `as_of_end` (see the module docstring), within side x strategy cells and pooled; `trades` are
    the trades entered before it (entry_time, exit_time, return, side and strategy when there are
    several, feature columns), exited or not. The trades are ordered by period and, within one, by
    cell, so that each period and cell is a slice."""
    cells = trade_cells(trades)
    period_days = params.period_days or adaptive_period_days(
        trades["entry_time"], cells, params.min_trades_per_period, params.neutral
    )
    complete = complete_periods(trades, as_of_end, period_days).to_numpy()
    rows = np.flatnonzero(complete)
    period, cell = period_numbers(trades["entry_time"], period_days)[rows], cells[rows]
    order = np.lexsort((cell, period))
    rows, period, cell = rows[order], period[order], cell[order]
    X = trades[features].to_numpy(dtype="float64")[rows]
    y = trades["return"].to_numpy(dtype="float64")[rows]
    bounds = _runs([period])
    minimum = params.min_trades_per_period
    pooled = [_block_ic(X[a:b], y[a:b], minimum) for a, b in bounds]
    if params.neutral:
        segments = _runs([period, cell])
        starts = [a for a, _ in segments]
        low, high = np.searchsorted(starts, np.array(bounds, dtype="int64").reshape(-1, 2).T).tolist()
        neutral = [_neutral_block(X, y, segments[i:j], minimum) for i, j in zip(low, high, strict=True)]
    else:
        neutral = pooled
    index = period_start_index(period[[a for a, _ in bounds]], period_days).rename("period_start")

    def frame(blocks: list[tuple[np.ndarray, np.ndarray]], part: int) -> pd.DataFrame:
        values = np.vstack([b[part] for b in blocks]) if blocks else np.empty((0, len(features)))
        return pd.DataFrame(values, index=index, columns=features)

    return PeriodIC(
        ic=frame(neutral, 0),
        n_trades=frame(neutral, 1).astype("int64"),
        holding_lag=holding_lag(trades["entry_time"][complete], trades["exit_time"][complete], period_days),
        pooled=frame(pooled, 0),
        period_days=period_days,
        neutral=params.neutral,
    )


def newey_west_lag(n_periods: int, holding: int) -> int:
    """The HAC lag: the holding periods' reach or ceil(1.3 sqrt(T)), whichever is larger, at most
    T - 2 (a lag needs pairs of residuals to estimate)."""
    rule = math.ceil(1.3 * math.sqrt(n_periods))
    return max(0, min(max(holding, rule), n_periods - 2))


def bartlett_weights(n_periods: int, lag: int) -> np.ndarray:
    """T x T matrix of Bartlett weights max(0, 1 - |t - s| / (L + 1))."""
    distance = np.abs(np.subtract.outer(np.arange(n_periods), np.arange(n_periods)))
    return np.clip(1.0 - distance / (lag + 1), 0.0, None)


@dataclass(frozen=True)
class HacTest:
    """A regression coefficient with its Newey-West test: `raw_se` is the textbook Newey-West
    standard error (statsmodels' cov_type="HAC", no correction), `se` the same rescaled to be
    unbiased under independent errors, and `df` the Satterthwaite degrees of freedom of `se`."""

    estimate: float
    raw_se: float
    se: float
    df: float

    @property
    def t_stat(self) -> float:
        return self.estimate / self.se if self.se > 0 else float("nan")


@dataclass(frozen=True)
class _HacDesign:
    """What a Newey-West test of one coefficient takes from the design alone (not the data): the
    coefficient's weights g, the quadratic form A, tr(A) and the Satterthwaite df."""

    g: np.ndarray
    A: np.ndarray
    trace: float
    df: float


@functools.lru_cache(maxsize=8)  # a T x T matrix each: 2 MB at ten years of weeks
def _hac_design(
    x_bytes: bytes, shape: tuple[int, int], coefficient: int, lag: int, pooled: bool
) -> _HacDesign:
    X = np.frombuffer(x_bytes, dtype="float64").reshape(shape)
    bread = np.linalg.inv(X.T @ X)
    g = X @ bread[:, coefficient]
    M = np.eye(shape[0]) - X @ bread @ X.T
    if pooled:
        A = M @ pooled_weights(g, lag) @ M
    else:
        GM = g[:, None] * M
        A = GM.T @ bartlett_weights(shape[0], lag) @ GM
    trace = float(np.trace(A))
    df = trace**2 / float(np.sum(A * A.T)) if trace > 0 else float("nan")
    return _HacDesign(g, A, trace, df)


def pooled_weights(g: np.ndarray, lag: int) -> np.ndarray:
    """B such that e' B e = sum over t, s of g_t g_s w(|t - s|) gamma(|t - s|), the variance of g'y
    with the residuals' autocovariances gamma(j) = sum_t e_t e_(t-j) / T pooled over the whole series
    and Bartlett weights w: the Toeplitz matrix of w(j) sum_t g_t g_(t-j), over T."""
    n = len(g)
    weights = np.clip(1.0 - np.arange(n) / (lag + 1), 0.0, None)
    products = np.array([g[j:] @ g[: n - j] for j in range(n)])
    return scipy.linalg.toeplitz(weights * products) / n


def hac_coefficient(
    values: np.ndarray, X: np.ndarray, coefficient: int, lag: int, pooled: bool = False
) -> HacTest:
    """OLS of `values` on the columns of X, and the Newey-West test of one coefficient.

    The coefficient is g'y with g = X (X'X)^-1 e_j, and the Newey-West variance of it is the
    quadratic form e' G W G e of the residuals e = M y (M = I - X (X'X)^-1 X', G = diag(g), W the
    Bartlett weights), that is y' A y with A = M G W G M. Under independent errors of variance s^2
    its mean is s^2 tr(A) while the coefficient's variance is s^2 g'g: in short series with a long
    lag tr(A) falls well short (a downward bias that made a nominal 5% test reject 10% of the time
    at T = 20), so the variance is scaled by g'g / tr(A), and the t reference has the Satterthwaite
    degrees of freedom tr(A)^2 / tr(A^2) (the small-sample correction of Bell and McCaffrey 2002
    and Imbens and Kolesar 2016, applied to Newey-West's weights). Everything but y' A y depends on
    the design alone, which features with the same weeks share: it is computed once per design.

    `pooled`: the autocovariances of the errors are taken to be the same all along the series and
    estimated from all its residuals (A = M B M, `pooled_weights`), instead of from the residuals
    where g is large. For a coefficient that rests on a few periods (the alpha monitor's last
    weeks against the years before) the sandwich above estimates the variance from those few
    residuals: unbiased but noisy, with about 4 degrees of freedom for 8 weeks, which leaves a test
    little power. Pooling assumes the errors' variance does not change with time (the monitor
    weights periods by their trades so that it does not) and gives more degrees of freedom the
    longer the series: about 6 at 12 periods, 13 at 52, 24 at 104."""
    X = np.ascontiguousarray(X, dtype="float64")
    design = _hac_design(X.tobytes(), (X.shape[0], X.shape[1]), coefficient, lag, pooled)
    variance = float(values @ design.A @ values)
    estimate = float(design.g @ values)
    raw_se = float(np.sqrt(max(variance, 0.0)))
    trace = design.trace
    se = float(np.sqrt(max(variance, 0.0) * (design.g @ design.g) / trace)) if trace > 0 else float("nan")
    return HacTest(estimate, raw_se, se, design.df)


def _none_if_nan(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def detectable(se: float, df: float, level: float) -> float | None:
    """The smallest effect a one-sided test at `level` with standard error `se` and `df` degrees of
    freedom detects with probability POWER: (t_(1-level) + t_POWER) x se (a two-sided test at 5%
    is a one-sided one at 2.5%)."""
    if not (np.isfinite(se) and se > 0 and np.isfinite(df) and df > 0):
        return None
    return float((stats.t.ppf(1 - level, df) + stats.t.ppf(POWER, df)) * se)


CANNOT_TELL = "cannot tell"


def mean_test(values: np.ndarray, holding: int) -> dict[str, object]:
    """The mean of an IC series and its corrected Newey-West test (module docstring, 2)."""
    n = len(values)
    mean = float(values.mean())
    lag = newey_west_lag(n, holding)
    test = hac_coefficient(values, np.ones((n, 1)), 0, lag)
    se, df, t_stat = test.se, test.df, test.t_stat
    return {
        "ic_mean": mean,
        "hac_lag": lag,
        "ic_hac_se": se,
        "ic_t_stat": _none_if_nan(t_stat),
        "ic_p_value": float(2 * stats.t.sf(abs(t_stat), df=df)) if np.isfinite(t_stat) else 1.0,
        "ic_ci_low": mean - stats.t.ppf(0.975, df) * se,
        "ic_ci_high": mean + stats.t.ppf(0.975, df) * se,
        "ic_mde": detectable(se, df, 0.025),
    }


def series_evidence(ic: pd.Series, holding: int, params: EvidenceParams) -> dict[str, object]:
    """One feature's evidence from its IC series (NaN periods dropped): the mean and its HAC
    test, the decay trend and persistence (module docstring). Figures a short series cannot
    support are None (MIN_PERIODS_FOR_TEST, MIN_PERIODS_FOR_TREND), and its verdicts say so."""
    ic = ic.dropna()
    values = ic.to_numpy(dtype="float64")
    n = len(values)
    row: dict[str, object] = dict.fromkeys(EVIDENCE_COLUMNS)
    row.update(n_periods=n, decay_verdict=CANNOT_TELL)
    if n == 0:
        return row
    mean = float(values.mean())
    sign = np.sign(mean)
    row.update(
        ic_mean=mean,
        ic_sign_consistency=float((np.sign(values) == sign).mean()) if sign else 0.0,
        persistence=UNINFORMED_PERSISTENCE,
    )
    if n < MIN_PERIODS_FOR_TEST:
        return row
    row.update(mean_test(values, holding))
    std, se = float(values.std(ddof=1)), float(row["ic_hac_se"])  # type: ignore[arg-type]
    row.update(
        ic_std=std,
        icir=_none_if_nan(mean / std) if std > 0 else None,
        n_effective_periods=_none_if_nan(std**2 / se**2) if se > 0 else None,
    )
    if n >= MIN_PERIODS_FOR_TREND:
        nonzero = bool(row["ic_ci_low"] > 0 or row["ic_ci_high"] < 0)  # type: ignore[operator]
        row.update(decay(values, ic.index, int(row["hac_lag"]), mean, nonzero, params))  # type: ignore[call-overload]
    return row


UNINFORMED_PERSISTENCE = 0.5  # the persistence of a series that cannot tell (uniform on [0, 1])
NOT_DECAYING_SHARE = 0.25  # 'not decaying': the data rule out a fade of this share of the IC


def persistence_posterior(estimate: float, sd: float) -> float:
    """The mean of the persistence under a uniform prior on [0, 1] and a normal likelihood centred
    at `estimate` with `sd`: a normal truncated to [0, 1]. A precise estimate gives itself (clipped
    to the interval), an uninformative one 0.5."""
    if not np.isfinite(estimate):
        return UNINFORMED_PERSISTENCE
    if not np.isfinite(sd) or sd <= 0:
        return float(np.clip(estimate, 0.0, 1.0))
    sd = min(sd, 1e3)  # wider is uniform on [0, 1] to 1e-7, and beyond it scipy's tails lose digits
    low, high = (0.0 - estimate) / sd, (1.0 - estimate) / sd
    with np.errstate(all="ignore"):  # accurate far into the tails, where the cdf difference is 0
        mean = float(stats.truncnorm.stats(low, high, loc=estimate, scale=sd, moments="m"))
    # beyond what even that resolves (tens of sds out), the mass sits at the nearest bound
    return mean if np.isfinite(mean) and 0.0 <= mean <= 1.0 else float(np.clip(estimate, 0.0, 1.0))


def decay(
    values: np.ndarray,
    periods: pd.Index,
    lag: int,
    mean: float,
    nonzero: bool,
    params: EvidenceParams,
) -> dict[str, object]:
    """The HAC trend of the sign-aligned IC series, the persistence and half-life it implies, the
    smallest fade it detects and its verdict (module docstring, 3 and 4). `nonzero`: whether the
    mean IC's interval excludes zero; decay is judged only then."""
    aligned = values * (np.sign(mean) or 1.0)
    years = np.asarray((pd.DatetimeIndex(periods) - periods[0]).days, dtype="float64") / DAYS_PER_YEAR
    X = np.column_stack([np.ones(len(years)), years])
    test = hac_coefficient(aligned, X, 1, lag)
    slope, se, t_stat = test.estimate, test.se, test.t_stat
    start = float(aligned.mean() - slope * years.mean())
    p_value = float(stats.t.cdf(t_stat, df=test.df)) if np.isfinite(t_stat) else 1.0
    decaying = bool(nonzero and slope < 0 and start > 0 and p_value < params.decay_level)
    span = float(years[-1] - years[0])
    slope_mde = detectable(se, test.df, params.decay_level)
    fade_mde = slope_mde * span if slope_mde is not None else None
    level = float(aligned.mean())
    distance = float(years[-1] - years.mean())
    if level > 0 and distance > 0:  # given the level: its own error is in the score's effect factor
        persistence = persistence_posterior(1.0 + slope * distance / level, se * distance / level)
    else:
        persistence = 0.0 if level <= 0 else UNINFORMED_PERSISTENCE
    # the largest fade over the span the data leave (one-sided 95%): 'not decaying' only when even
    # that is less than NOT_DECAYING_SHARE of the level: an equivalence test, not the absence of a
    # significant trend
    fade_upper = (-slope + stats.t.ppf(0.95, test.df) * se) * span if np.isfinite(test.df) else np.inf
    if decaying:
        verdict = "decaying"
    elif nonzero and fade_upper < NOT_DECAYING_SHARE * abs(mean):
        verdict = "not decaying"
    else:
        verdict = CANNOT_TELL
    return {
        "ic_slope": slope,
        "ic_slope_se": se,
        "ic_slope_p_value": p_value,
        "decaying": decaying,
        "ic_now": float(np.sign(mean) * level * persistence),
        "persistence": persistence,
        "half_life_days": float(start / (2 * -slope) * DAYS_PER_YEAR) if decaying else None,
        "decay_mde": fade_mde,
        "decay_verdict": verdict,
    }


EVIDENCE_COLUMNS = [
    "n_periods",
    "ic_mean",
    "ic_std",
    "icir",
    "hac_lag",
    "ic_hac_se",
    "ic_t_stat",
    "ic_p_value",
    "ic_ci_low",
    "ic_ci_high",
    "ic_mde",
    "n_effective_periods",
    "ic_sign_consistency",
    "ic_slope",
    "ic_slope_se",
    "ic_slope_p_value",
    "decaying",
    "ic_now",
    "persistence",
    "half_life_days",
    "decay_mde",
    "decay_verdict",
]
POOLED_COLUMNS = {  # the pooled series' mean test, under the columns it adds
    "ic_mean": "pooled_ic_mean",
    "ic_ci_low": "pooled_ic_ci_low",
    "ic_ci_high": "pooled_ic_ci_high",
    "ic_p_value": "pooled_ic_p_value",
}


def benjamini_hochberg(p_values: pd.Series) -> pd.Series:
    """Benjamini-Hochberg q-values of the non-null p-values (NaN where there is none)."""
    tested = p_values.notna()
    q_values = pd.Series(np.nan, index=p_values.index)
    if tested.any():
        q_values[tested] = stats.false_discovery_control(p_values[tested].astype("float64"), method="bh")
    return q_values


def effect_size(table: pd.DataFrame, reference_ic: float) -> pd.Series:
    """1 - exp(-d / reference_ic), d the distance of the IC's 95% interval from zero (0 when the
    interval holds zero): 0.63 when the data support an IC of the reference size."""
    low, high = table["ic_ci_low"].astype("float64"), table["ic_ci_high"].astype("float64")
    supported = np.maximum(np.maximum(low, -high), 0.0)
    return 1.0 - np.exp(-supported / reference_ic)


REDUNDANT_CORRELATION = 0.95  # |correlation| at which two features are one hypothesis
CORRELATION_SAMPLE = 20_000  # trades the redundancy is judged on, at the most (an even sample)


def redundant_aliases(X: np.ndarray, features: list[str]) -> dict[str, str]:
    """feature -> the earlier feature it is one hypothesis with: exact duplicates, negations and
    near duplicates (|Pearson correlation| >= REDUNDANT_CORRELATION over the trades, an even sample
    of CORRELATION_SAMPLE at the most), grouped greedily in feature order, so the representative is
    chosen without looking at any label. Constant columns are no one's alias."""
    X = np.asarray(X, dtype="float64")
    if len(X) > CORRELATION_SAMPLE:
        X = X[np.linspace(0, len(X) - 1, CORRELATION_SAMPLE).astype("int64")]
    X = np.where(np.isnan(X), np.nanmean(X, axis=0), X)
    centred = X - X.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    varies = norms > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = (centred.T @ centred) / np.outer(norms, norms)
    aliases: dict[str, str] = {}
    for i, feature in enumerate(features):
        if feature in aliases or not varies[i]:
            continue
        for j in range(i + 1, len(features)):
            if features[j] not in aliases and varies[j] and abs(correlation[i, j]) >= REDUNDANT_CORRELATION:
                aliases[features[j]] = feature
    return aliases


def pooled_evidence(pooled: pd.Series, holding: int) -> dict[str, object]:
    """The mean test of the pooled IC series (POOLED_COLUMNS), None below MIN_PERIODS_FOR_TEST."""
    values = pooled.dropna().to_numpy(dtype="float64")
    if len(values) < MIN_PERIODS_FOR_TEST:
        return dict.fromkeys(POOLED_COLUMNS.values())
    test = mean_test(values, holding)
    return {column: test[name] for name, column in POOLED_COLUMNS.items()}


def ic_verdict(table: pd.DataFrame, level: float, reference_ic: float) -> pd.Series:
    """In words, what the mean IC test says: 'nonzero' (q below `level`), 'small' (not nonzero, and
    the 95% interval lies within +-`reference_ic`: an equivalence test), else 'cannot tell'; None
    for an indicator and for an alias (it is its representative's hypothesis)."""
    q = table["ic_q_value"].astype("float64")
    inside = (table["ic_ci_low"].astype("float64") > -reference_ic) & (
        table["ic_ci_high"].astype("float64") < reference_ic
    )
    verdict = np.where(q < level, "nonzero", np.where(inside, "small", CANNOT_TELL))
    tested = ~table["indicator"] & table["alias_of"].isna()
    return pd.Series(verdict, index=table.index, dtype="object").where(tested, None)


def feature_evidence(
    series: PeriodIC, params: EvidenceParams, aliases: dict[str, str] | None = None
) -> pd.DataFrame:
    """One row per feature of the IC series: the columns of `series_evidence`, the pooled series'
    mean test (POOLED_COLUMNS), then ic_q_value, significance, effect, alpha_score and ic_verdict
    (module docstring). A redundant group is one hypothesis (`aliases`, redundant_aliases): only
    its representative enters the Benjamini-Hochberg step and gets a score; its aliases keep their
    IC figures, `alias_of` names the representative and the representative's `aliases` lists them.
    An indicator of the side or the strategy (`indicator`) is constant within the cells: its
    evidence is the pooled one, reported apart; it is no hypothesis and gets no score."""
    aliases = aliases or {}
    table = pd.DataFrame(
        [
            {
                "feature": feature,
                **series_evidence(series.ic[feature], series.holding_lag, params),
                **pooled_evidence(series.pooled[feature], series.holding_lag),
            }
            for feature in series.ic.columns
        ],
        columns=["feature", *EVIDENCE_COLUMNS, *POOLED_COLUMNS.values()],
    )
    table["n_trades"] = [int(series.n_trades[f].sum()) for f in table["feature"]]
    table["indicator"] = table["feature"].map(is_indicator).astype(bool)
    table["alias_of"] = table["feature"].map(aliases)
    members: dict[str, list[str]] = {}
    for alias, representative in aliases.items():
        members.setdefault(representative, []).append(alias)
    table["aliases"] = table["feature"].map(lambda f: ", ".join(members[f]) if f in members else None)
    hypotheses = table["ic_p_value"].astype("float64").where(table["alias_of"].isna() & ~table["indicator"])
    table["ic_q_value"] = benjamini_hochberg(hypotheses)
    table["significance"] = 1.0 - table["ic_q_value"]
    table["effect"] = effect_size(table, params.reference_ic)
    table["alpha_score"] = table["significance"] * table["persistence"].astype("float64") * table["effect"]
    table["decaying"] = table["decaying"].fillna(False).astype(bool)
    table["ic_verdict"] = ic_verdict(table, SIGNIFICANCE_LEVEL, params.reference_ic)
    return table
