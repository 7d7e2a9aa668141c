"""Leakage guard, second line: features that predict the label too well to be real.

The first line is in schema.py: outcome columns (exit price, pnl, holding period, ...) can never be
features. A feature computed after entry can still leak under another name; an in-sample rank IC
with the realized return far above what entry-time signals reach is the evidence. Such a feature is
quarantined: left out of every model of the run (it would otherwise take all the credit and bury
every honest feature), stored in `excluded_features` with its evidence, and reported by the failing
`no_leaky_features` check.

The screen (`screen_features`), per feature and group of trades:

    IC      the rank IC within each side x strategy cell (Spearman of the feature with the realized
            return inside the cell), averaged over the cells by their trades. Within cells, because
            pooled over sides a bar feature measures which side a strategy took, and the label's
            side-aligned features become the side (an honest `rsi_14 * side` reached 0.31 on one
            instrument's trades from the side alone).
    SE      from the data, by the influence function of the correlation, evaluated at the ceiling
            (the variance a test of |IC| <= ceiling needs; it stays positive where the estimate is
            +-1 on a handful of trades) and summed over each entry day: trades entered the same day
            with the same features count once, independent trades count each (24 a day count as
            24, not as one day). Then a Bartlett HAC over the daily sums with a lag of the holding
            reach (overlapping holdings share returns), never below the plain day clusters, and at
            least the variance clustered by symbol (a slow feature keeps its level on a symbol for
            weeks). G / (G - 1) small-sample factors.
    test    (|IC| - ceiling) / SE above the one-sided (1 - level) quantile of Student's t, with the
            entry days less one, at most 1.5 x span / (holding reach + 1), degrees of freedom (half
            the Bartlett estimate's equivalent degrees of freedom: conservative). The low end of
            the interval, |IC| - t x SE, is stored as the bound.

The ceiling (`leakage_max_abs_ic`, 0.15) is a statement about entry-time trade features: a
trade-level rank IC of a few hundredths is strong, 0.1 exceptional. A leak is far above it: the
return itself, or any feature known after the exit, has an IC of 0.3 to 1.0. Where trades fall in
few independent symbol x holding-period stretches the ceiling rises to the spread an IC over them
has by chance, 2 / sqrt(stretches): on the embedded stocks a slow feature's in-sample IC over a
quarter reaches 0.5-0.95, honestly, because a quarter of 15-day trades on six stocks holds a few
dozen independent stretches. Below 10 stretches the test does not decide; a near copy of the label
(|IC| >= 0.98 over 20 trades or more, which no honest column of the embedded data came within 0.04
of) is flagged whatever the window. The bound makes the guard depend on the data, not on the window
length: the same leak is caught in a 90-day window and in a ten-year one once the data can tell it
from the ceiling; where they cannot, the guard cannot see a partial leak, and the out-of-sample
plausibility check remains (docs/statistics.md, Leakage; the measured power and blind spots in
docs/benchmarks.md).

Groups: each strategy (its sides as the cells); each side of a strategy alone, where it has both (a
leak in one side, or an unsigned leak such as the raw price move, whose IC has opposite signs in
the two sides and cancels in their average); and all trades together (strategy x side cells) when
there is more than one strategy. The evidence kept for a flagged feature is the group in which it
lies most standard errors beyond its quantile. A feature AT the ceiling meets up to three tests
(its strategy, each side), so it is flagged up to three times as often as the level (measured
about twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

ALL_TRADES = "all"
STRETCH_SPREADS = 2.0  # the group ceiling's chance spreads (group_ceiling)
MIN_STRETCHES = 10  # below this many independent stretches the screen does not decide ...
NEAR_COPY_IC = 0.98  # ... except on a near copy of the label: |IC| at least this
NEAR_COPY_TRADES = 20  # over at least this many trades
EVIDENCE_COLUMNS = [
    "feature",
    "ic",
    "ic_se",
    "ic_bound",
    "ceiling",
    "n_trades",
    "n_days",
    "screen_group",
    "reason",
]
QUARANTINE_COLUMNS = [*EVIDENCE_COLUMNS, "n_folds_screened", "n_screens_flagged", "flagged_on"]


@dataclass(frozen=True)
class LeakScreenParams:
    """ceiling: the largest in-sample |rank IC| an entry-time feature plausibly reaches; level: the
    one-sided level of the bound (the chance an honest feature AT the ceiling is flagged)."""

    ceiling: float = 0.15
    level: float = 0.001

    def __post_init__(self):
        if not 0.0 < self.ceiling < 1.0:
            raise ValueError(f"the leakage ceiling must be in (0, 1), got {self.ceiling}")
        if not 0.0 < self.level < 0.5:
            raise ValueError(f"the leakage level must be in (0, 0.5), got {self.level}")


@dataclass(frozen=True)
class ClusteredIC:
    """Per column: the within-cell rank IC, its day-clustered standard error, the trades and days
    that carried it (cells where the column or the return is constant carry nothing)."""

    ic: np.ndarray
    se: np.ndarray
    n_trades: np.ndarray
    n_days: np.ndarray


def _cell_scores(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks of each column standardized to mean 0 and (population) sd 1, and whether the
    column varies (a constant column scores 0)."""
    ranks = stats.rankdata(values, axis=0)
    ranks -= ranks.mean(axis=0)
    sd = np.sqrt((ranks**2).mean(axis=0))
    varies = sd > 0
    return np.where(varies, ranks / np.where(varies, sd, 1.0), 0.0), varies


def clustered_rank_ic(
    X: np.ndarray,
    y: np.ndarray,
    cell: np.ndarray,
    day: np.ndarray,
    at: float | None = None,
    lag: int = 0,
    symbol: np.ndarray | None = None,
) -> ClusteredIC:
    """The rank IC of every column of X with y within the cells, and its standard error clustered by
    `day` (module docstring), evaluated at the IC itself or, with `at`, at an IC of `at` with the
    sign of the estimate: the variance a test of |IC| <= at needs, which stays positive where the
    estimate is +-1 on a handful of trades. `lag`: a Bartlett HAC over the daily sums (calendar
    days), never below the plain day-clustered variance. `symbol`: the variance is also at least the
    one clustered by symbol (a slow feature read on one symbol keeps its level for weeks; with many
    trades a day that, not the day, is what the trades share). A column that varies in no cell has
    IC NaN."""
    X = np.asarray(X, dtype="float64").reshape(len(y), -1)
    y = np.asarray(y, dtype="float64")
    cell = np.asarray(cell, dtype=object)
    n_columns = X.shape[1]
    cells = []
    total = np.zeros(n_columns)
    weighted_ic = np.zeros(n_columns)
    for name in pd.unique(cell):
        rows = np.flatnonzero(cell == name)
        if rows.size < 3:
            continue
        u, varies = _cell_scores(X[rows])
        v, y_varies = _cell_scores(y[rows, None])
        carried = varies & bool(y_varies[0])
        ic = np.where(carried, (u * v).mean(axis=0), 0.0)
        cells.append((rows, ic, u, v, carried))
        weighted_ic += rows.size * ic
        total += rows.size * carried
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.where(total > 0, weighted_ic / np.where(total > 0, total, 1.0), np.nan)
    reference = None if at is None else at * np.where(np.nan_to_num(pooled) < 0, -1.0, 1.0)
    influence = np.zeros_like(X)
    weight = np.zeros_like(X)  # 1 where the row's cell carries the column
    for rows, ic, u, v, carried in cells:
        r = ic if reference is None else reference
        influence[rows] = np.where(carried, u * v - r / 2.0 * (u**2 + v**2) - (ic - r), 0.0)
        weight[rows] = carried
    calendar = np.asarray(day).astype("datetime64[D]").astype("int64")
    day_index = calendar - calendar.min() if len(calendar) else calendar
    n_calendar = int(day_index.max()) + 1 if len(calendar) else 0
    day_sums = np.zeros((n_calendar, n_columns))
    np.add.at(day_sums, day_index, influence)
    carried_days = np.zeros((n_calendar, n_columns))
    np.add.at(carried_days, day_index, weight)
    n_days = (carried_days > 0).sum(axis=0)
    cluster = (day_sums**2).sum(axis=0)
    long_run = cluster.copy()
    for k in range(1, min(lag, n_calendar - 1) + 1):
        long_run += 2.0 * (1.0 - k / (lag + 1)) * (day_sums[k:] * day_sums[:-k]).sum(axis=0)
    correction = np.where(n_days > 1, n_days / np.maximum(n_days - 1, 1), np.nan)
    variance = correction * np.maximum(long_run, cluster)
    if symbol is not None:
        names, symbol_index = np.unique(np.asarray(symbol, dtype=object).astype(str), return_inverse=True)
        if len(names) > 1:
            symbol_sums = np.zeros((len(names), n_columns))
            np.add.at(symbol_sums, symbol_index, influence)
            by_symbol = len(names) / (len(names) - 1) * (symbol_sums**2).sum(axis=0)
            variance = np.maximum(variance, by_symbol)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where(total > 0, np.sqrt(variance) / total, np.nan)
    return ClusteredIC(pooled, se, total.astype("int64"), n_days.astype("int64"))


@dataclass(frozen=True)
class TradeKeys:
    """What the screen needs of each trade besides its features and label."""

    strategy: np.ndarray
    side: np.ndarray
    symbol: np.ndarray
    entry_time: np.ndarray  # datetime64[us]
    exit_time: np.ndarray  # datetime64[us]

    @classmethod
    def of(cls, trades: pd.DataFrame) -> TradeKeys:
        return cls(
            trades["strategy"].astype(str).to_numpy(),
            trades["side"].astype(str).to_numpy(),
            trades["symbol"].astype(str).to_numpy(),
            trades["entry_time"].to_numpy(dtype="datetime64[us]"),
            trades["exit_time"].to_numpy(dtype="datetime64[us]"),
        )

    @property
    def entry_day(self) -> np.ndarray:
        return self.entry_time.astype("datetime64[D]")

    def take(self, rows: np.ndarray) -> TradeKeys:
        return TradeKeys(
            self.strategy[rows],
            self.side[rows],
            self.symbol[rows],
            self.entry_time[rows],
            self.exit_time[rows],
        )


@dataclass(frozen=True)
class ScreenGroup:
    """Trades the screen judges together: their positions, the cell of each (the IC is taken within
    cells), the holding reach (the HAC lag, days), the independent stretches they fall in, the
    ceiling their ICs are judged against and whether the test decides there (near copies of the
    label are flagged either way)."""

    name: str
    rows: np.ndarray
    cells: np.ndarray
    reach: int
    stretches: int
    ceiling: float

    @property
    def decides(self) -> bool:
        return self.stretches >= MIN_STRETCHES


def screen_groups(trades: TradeKeys, params: LeakScreenParams) -> list[ScreenGroup]:
    """Each strategy with its sides as cells; each side of a strategy that has both on its own (a
    leak in one side, or an unsigned one, such as the raw price move, whose IC has opposite signs
    in the two sides and cancels in their average); and all trades with strategy x side cells when
    there is more than one strategy."""
    names = sorted(set(trades.strategy))
    members = [(name, trades.strategy == name) for name in names]
    for name in names:
        sides = sorted(set(trades.side[trades.strategy == name]))
        if len(sides) > 1:
            members += [
                (f"{name}, side {side}", (trades.strategy == name) & (trades.side == side)) for side in sides
            ]
    if len(names) > 1:
        members.append((ALL_TRADES, np.ones(len(trades.strategy), dtype=bool)))
    cells = np.char.add(np.char.add(trades.strategy.astype(str), "|"), trades.side.astype(str))
    groups = []
    for name, mask in members:
        if mask.sum() < 3:
            continue
        rows = np.flatnonzero(mask)
        reach = holding_reach_days(trades.entry_time[rows], trades.exit_time[rows])
        stretches = independent_stretches(trades.symbol[rows], trades.entry_day[rows], reach)
        groups.append(
            ScreenGroup(
                str(name), rows, cells[rows], reach, stretches, group_ceiling(params.ceiling, stretches)
            )
        )
    return groups


def holding_reach_days(entry_time: np.ndarray, exit_time: np.ndarray) -> int:
    """The 99th percentile of the holding time in whole days (at least 1): how many entry days a
    trade's return overlaps with, the HAC lag of the screen."""
    held = (
        np.asarray(exit_time, dtype="datetime64[us]") - np.asarray(entry_time, dtype="datetime64[us]")
    ).astype("float64") / 86_400e6
    return max(1, int(np.ceil(np.quantile(held, 0.99)))) if held.size else 1


def degrees_of_freedom(n_days: np.ndarray, span_days: int, lag: int) -> np.ndarray:
    """The Student t degrees of freedom of the day-clustered HAC variance: the entry days less one,
    and at most 1.5 x span / (lag + 1) calendar days (half the Bartlett estimate's equivalent
    degrees of freedom, 3 T / (lag + 1): conservative), at least 1."""
    return np.maximum(np.minimum(n_days - 1.0, 1.5 * span_days / (lag + 1.0)), 1.0)


def independent_stretches(symbol: np.ndarray, day: np.ndarray, reach: int) -> int:
    """How many (symbol, holding stretch) pairs hold trades: the stretches are `reach` days long from
    the first entry day. A slow feature read on one symbol is about one value per stretch, so this
    is how many independent observations such a feature's IC rests on at the least."""
    calendar = np.asarray(day).astype("datetime64[D]").astype("int64")
    if calendar.size == 0:
        return 0
    stretch = (calendar - calendar.min()) // max(reach, 1)
    return len(pd.MultiIndex.from_arrays([np.asarray(symbol, dtype=object), stretch]).unique())


def group_ceiling(ceiling: float, stretches: int) -> float:
    """The ceiling a group's IC is judged against: `ceiling`, or the spread an IC over that many
    independent stretches has by chance, STRETCH_SPREADS / sqrt(stretches), whichever is larger."""
    return max(ceiling, STRETCH_SPREADS / np.sqrt(max(stretches, 1)))


def near_copies(evidence: ClusteredIC) -> np.ndarray:
    """Per column: whether it orders the realized returns almost exactly (|IC| >= NEAR_COPY_IC over
    at least NEAR_COPY_TRADES trades): a copy of the label, flagged whatever the window; no honest
    column of the embedded data came closer than 0.94 over 20 trades."""
    return (np.abs(np.nan_to_num(evidence.ic)) >= NEAR_COPY_IC) & (evidence.n_trades >= NEAR_COPY_TRADES)


def leak_statistic(evidence: ClusteredIC, ceiling: float) -> np.ndarray:
    """(|IC| - ceiling) / SE at the ceiling (NaN with fewer than two days): how many standard errors
    the IC lies beyond what an entry-time feature reaches."""
    with np.errstate(invalid="ignore", divide="ignore"):
        statistic = (np.abs(evidence.ic) - ceiling) / evidence.se
    return np.where((evidence.n_days > 1) & (evidence.se > 0), statistic, np.nan)


def screen_features(
    X: np.ndarray,
    y: np.ndarray,
    features: list[str],
    params: LeakScreenParams,
    trades: TradeKeys,
) -> pd.DataFrame:
    """The features to leave out of the model, with the evidence of the group that gave each away
    (EVIDENCE_COLUMNS, most standard errors beyond its ceiling first; module docstring)."""
    best: dict[str, dict[str, object]] = {}
    for group in screen_groups(trades, params):
        name, rows, ceiling, decides = group.name, group.rows, group.ceiling, group.decides
        day = trades.entry_day[rows]
        evidence = clustered_rank_ic(
            X[rows], y[rows], group.cells, day, at=ceiling, lag=group.reach, symbol=trades.symbol[rows]
        )
        span = int((day.max() - day.min()).astype("int64")) + 1
        dof = degrees_of_freedom(evidence.n_days, span, group.reach)
        statistic = leak_statistic(evidence, ceiling)
        quantile = stats.t.ppf(1.0 - params.level, dof)
        copies = near_copies(evidence)
        for j in np.flatnonzero(((statistic > quantile) & decides) | copies):
            margin = float(statistic[j] - quantile[j]) if np.isfinite(statistic[j]) else np.inf
            feature = features[j]
            if feature in best and float(best[feature]["margin"]) >= margin:  # type: ignore[arg-type]
                continue
            where = "all trades" if name == ALL_TRADES else f"strategy {name!r}"
            bound = abs(evidence.ic[j]) - quantile[j] * evidence.se[j]
            best[feature] = {
                "feature": feature,
                "ic": float(evidence.ic[j]),
                "ic_se": float(evidence.se[j]),
                "ic_bound": float(bound),
                "ceiling": ceiling,
                "n_trades": int(evidence.n_trades[j]),
                "n_days": int(evidence.n_days[j]),
                "screen_group": name,
                "margin": margin,
                "reason": (
                    f"in-sample rank IC {evidence.ic[j]:+.3f} within side over {evidence.n_trades[j]} trades "
                    f"({where}): it orders the realized returns almost exactly; a copy of the label"
                    if copies[j] and not (decides and statistic[j] > quantile[j])
                    else f"in-sample rank IC {evidence.ic[j]:+.3f} within side (SE {evidence.se[j]:.3f}, "
                    f"{evidence.n_days[j]} entry days, {where}): its low end {bound:.3f} is above "
                    f"{ceiling:.3g}, more than an entry-time feature reaches; likely computed after entry"
                ),
            }
    table = pd.DataFrame(list(best.values()), columns=[*EVIDENCE_COLUMNS, "margin"])
    table = table.sort_values("margin", ascending=False, kind="stable").reset_index(drop=True)
    return table[EVIDENCE_COLUMNS]


def screen_reach(params: LeakScreenParams, trades: TradeKeys) -> pd.DataFrame:
    """Per group the screen looks at: its trades, independent stretches, the ceiling its IC is judged
    against and whether it decides at all (fewer than MIN_STRETCHES: it cannot tell)."""
    return pd.DataFrame(
        [
            {
                "screen_group": group.name,
                "n_trades": len(group.rows),
                "holding_days": group.reach,
                "independent_stretches": group.stretches,
                "ceiling": group.ceiling,
                "decides": group.decides,
            }
            for group in screen_groups(trades, params)
        ]
    )


class LeakScreen:
    """training positions -> mask of the features `screen_features` flags on those trades alone:
    what the walk-forward runs on each fold's training trades and on all trades (core/model.py
    holds every flagged feature out of every model of the run). It keeps the evidence of every set
    of trades it screened, in order, so the quarantine table reuses it instead of screening again."""

    def __init__(
        self, X: np.ndarray, y: np.ndarray, features: list[str], params: LeakScreenParams, trades: TradeKeys
    ):
        self.X, self.y, self.features, self.params, self.trades = X, y, features, params, trades
        self.evidence: list[pd.DataFrame] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        flagged = screen_features(
            self.X[rows], self.y[rows], self.features, self.params, self.trades.take(rows)
        )
        self.evidence.append(flagged)
        return np.isin(np.asarray(self.features, dtype=object), flagged["feature"].to_numpy(dtype=object))

    def quarantine_table(self) -> pd.DataFrame:
        """The `excluded_features` rows of a run whose screens ran on each fold's training trades,
        then on all trades: every feature a screen flagged, with the evidence of the widest screen
        that flagged it, the screens that did (`flagged_on`, n_screens_flagged) and the fold models
        that held it out (n_folds_screened: all of them)."""
        n_folds = len(self.evidence) - 1
        labels = [f"fold {i + 1}" for i in range(n_folds)] + ["all trades"]
        flagged_by: dict[str, list[int]] = {}
        for i, table in enumerate(self.evidence):
            for feature in table["feature"]:
                flagged_by.setdefault(feature, []).append(i)
        rows = []
        for feature, by in flagged_by.items():
            widest = self.evidence[by[-1]]
            rows.append(
                {
                    **widest[widest["feature"] == feature].iloc[0].to_dict(),
                    "n_folds_screened": n_folds,
                    "n_screens_flagged": len(by),
                    "flagged_on": ", ".join(labels[i] for i in by),
                }
            )
        table = pd.DataFrame(rows, columns=QUARANTINE_COLUMNS)
        return table.sort_values("ic", key=np.abs, ascending=False, kind="stable").reset_index(drop=True)


def likely_leaks(importance: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """The `n` features with the largest OOS permutation importance (feature, perm_importance): where
    a leak no single feature shows is most likely to sit."""
    return importance.sort_values(["perm_importance", "feature"], ascending=[False, True]).head(n)


def rank_ic_low_end(rank_ic: float, n: int, level: float) -> float:
    """The one-sided (1 - level) lower bound of a rank IC over n trades: Fisher's z with the
    Spearman variance 1.06 / (n - 3) (Fieller, Hartley and Pearson 1957); NaN below 5 trades."""
    if not np.isfinite(rank_ic) or n < 5:
        return float("nan")
    z = np.arctanh(np.clip(rank_ic, -0.999999, 0.999999))
    return float(np.tanh(z - stats.norm.ppf(1.0 - level) * np.sqrt(1.06 / (n - 3))))


def rate_low_end(rate: float, n: int, level: float) -> float:
    """The one-sided (1 - level) Wilson lower bound of a proportion over n trials (NaN for none)."""
    if not np.isfinite(rate) or n < 1:
        return float("nan")
    z = stats.norm.ppf(1.0 - level)
    centre = rate + z**2 / (2 * n)
    spread = z * np.sqrt(rate * (1 - rate) / n + z**2 / (4 * n**2))
    return float((centre - spread) / (1 + z**2 / n))


def implausible_performance(
    metrics: Mapping[str, object],
    importance: pd.DataFrame,
    max_rank_ic: float,
    max_hit_rate: float,
    level: float = 0.001,
) -> str | None:
    """Why the run's out-of-sample performance is beyond what entry-time trade features plausibly
    reach, naming the three features with the largest OOS permutation importance (`importance`:
    feature, perm_importance) as the likely leak; None when it is plausible. `metrics`: the run's
    run_metrics row (oos_rank_ic over n_oos trades, oos_hit_rate over oos_n_taken).

    Judged, like the screen, on the low end of each figure's one-sided (1 - level) interval, not on
    the point: a quarter of the embedded data has a few dozen OOS trades, and honest runs reached a
    hit rate of 0.94 over 16 taken trades and an OOS rank IC of 0.53 by chance.

    The per-feature screen cannot see a leak that no single feature shows: a post-exit statistic
    times a random +-1 flag has a univariate IC near 0, yet a tree multiplies them back (OOS rank IC
    0.98, hit rate 0.96 in the planted case). Real trade-level OOS rank ICs are a few hundredths to a
    few tenths; the defaults (rank IC 0.5, hit rate 0.8) leave room for strong honest signals."""
    rank_ic, hit_rate = float(metrics["oos_rank_ic"]), float(metrics["oos_hit_rate"])  # type: ignore[arg-type]
    n_oos, n_taken = int(metrics["n_oos"]), int(metrics["oos_n_taken"])  # type: ignore[call-overload]
    ic_low, hit_low = rank_ic_low_end(rank_ic, n_oos, level), rate_low_end(hit_rate, n_taken, level)
    problems = []
    if np.isfinite(ic_low) and ic_low > max_rank_ic:
        problems.append(
            f"OOS rank IC {rank_ic:.3f} (low end {ic_low:.3f} over {n_oos} trades) > {max_rank_ic}"
        )
    if np.isfinite(hit_low) and hit_low > max_hit_rate:
        problems.append(
            f"OOS hit rate {hit_rate:.3f} (low end {hit_low:.3f} over {n_taken} taken) > {max_hit_rate}"
        )
    if not problems:
        return None
    top = likely_leaks(importance)
    named = ", ".join(f"{f} ({v:.3g})" for f, v in zip(top["feature"], top["perm_importance"], strict=True))
    return (
        " and ".join(problems)
        + ": more than entry-time features plausibly predict; likely leak (largest OOS permutation "
        + f"importance): {named}"
    )


def leak_suspicion(importance: pd.DataFrame, implausible: str | None) -> pd.DataFrame:
    """Per feature of a run's importance table (feature, quarantined, perm_importance): `suspect`,
    whether it is a possible leak of that run (quarantined by the screen, or among the features the
    failed out-of-sample check names), and `suspect_reason`. A suspect feature feeds no prior and
    gets no alpha score (core/alpha.py)."""
    named = set(likely_leaks(importance)["feature"]) if implausible else set()
    quarantined = importance["quarantined"].fillna(False).astype(bool).to_numpy()
    reasons = [
        "quarantined by the leak screen"
        if held
        else f"{NAMED_BY_CHECK}{implausible}"
        if feature in named
        else None
        for feature, held in zip(importance["feature"], quarantined, strict=True)
    ]
    return pd.DataFrame(
        {
            "feature": importance["feature"].to_numpy(),
            "suspect": [reason is not None for reason in reasons],
            "suspect_reason": reasons,
        }
    )


SUSPECT = "SUSPECT RUN"
NAMED_BY_CHECK = "named by the out-of-sample check: "


def failed_oos_check(history: pd.DataFrame) -> str | None:
    """What the out-of-sample check found, as feature_importance stored it on the features it named
    (feature_importance_history rows of one run with `suspect_reason`); None when it passed."""
    if "suspect_reason" not in history.columns:
        return None
    reasons = history["suspect_reason"].dropna().astype(str)
    named = reasons[reasons.str.startswith(NAMED_BY_CHECK)]
    return named.iloc[0].removeprefix(NAMED_BY_CHECK) if len(named) else None


def suspect_run_line(run_key: str, history: pd.DataFrame, quarantined: pd.DataFrame) -> str | None:
    """The line every reader of a run shows first when the run is suspect, naming its suspected
    features: "SUSPECT RUN A..B/ridge: possible leaks quarantined: x; the out-of-sample check failed
    (OOS rank IC 0.700 > 0.5 ...): suspected y, z"; None for a run without suspicion. `history`:
    feature_importance_history rows (with `suspect`, `suspect_reason` where stored); `quarantined`:
    excluded_features rows (run_key, feature)."""
    held = (
        quarantined.loc[quarantined["run_key"] == run_key, "feature"].astype(str).tolist()
        if {"run_key", "feature"} <= set(quarantined.columns)
        else []
    )
    named = history.iloc[0:0]
    if "suspect" in history.columns:
        rows = history[history["run_key"] == run_key]
        named = rows[
            rows["suspect"].astype("boolean").fillna(False).to_numpy(dtype=bool) & ~rows["feature"].isin(held)
        ]
    parts = []
    if held:
        parts.append(
            "possible leaks quarantined (held out of every model): "
            + ", ".join(" ".join(f.split()) for f in held)
        )
    if len(named):
        check = str(failed_oos_check(named)).split(": more than")[0]
        suspects = ", ".join(" ".join(str(f).split()) for f in named["feature"])
        parts.append(f"the out-of-sample check failed ({check}): suspected {suspects}")
    if not parts:
        return None
    return (
        f"{SUSPECT} {run_key}: "
        + "; ".join(parts)
        + "; its suspected features feed no prior and get no alpha score"
    )
