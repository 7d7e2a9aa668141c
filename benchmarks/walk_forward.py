"""Does the continual-learning loop help? Two parts, every arm with the same ridge alpha (10).

1. Embedded data: consecutive ranges, three ways, each run through the real pipeline
   (dg.materialize of the whole code location over the range, one warehouse per way):

    cold        every run a plain ridge (warm_start and curriculum off)
    warm        ridge shrunk toward the empirical-Bayes priors of the earlier runs (the default)
    warm gated  only informative priors, |mean| >= 2 sd (analysis_settings.prior_min_z = 2)
    warm+curr   warm, and training trades weighted by the latest run's regime weights
    cold uncentred  cold, directional features multiplied by the side without centring them

   Per-run and mean out-of-sample rank IC and hit rate, and the paired difference to cold start
   over the runs after the first (the first is cold in every way) with a 95% t interval, leaving
   out the runs that are suspect in any way (a quarantined feature or a failed out-of-sample check).

2. Simulated data whose truth is known (tests' simulation.py: 8 symbols, AR(1) features, overlapping
   holdings), eight consecutive quarters per seed, warm against cold on the SAME trades, folds and
   alpha, through the same core functions the assets call (train_and_evaluate, feature_importance,
   empirical_bayes_priors; the pipeline part costs ~10 s a run, too slow for 200 replications):

    persistent   two features with a constant IC (0.05 and -0.04) among 20 noise features
    random walk  the same two features, their IC moving by a normal step (sd 0.03) each quarter
    flipping     the same two features, their IC changing sign every quarter
    null         20 noise features, no signal

   Per scenario and prior (every prior, min_z 0, the default; informative priors only, min_z 2):
   the mean paired gain in OOS rank IC and in hit rate over the base rate (warm - cold), its 95%
   interval over seeds (each seed's mean over runs 2..8 is one independent value),
   the share of seeds where warm beats cold, the power (share of seeds whose own paired t-test over
   its 7 runs is significant at 5%, one-sided) and the median prior weight (the prior's share of a
   coefficient's precision); runs the leak guard flags are left out.

   Then warm (every prior) against two cold ridges on the history, same alpha, folds and test
   trades (tests' simulation.py, history_arm): `all-history` on every earlier quarter's trades plus the
   quarter's training trades, `EW` the same with sample weights halving every 2 quarters of a
   trade's age. Mean OOS rank IC per arm, the paired difference to warm with its 95% interval over
   seeds, the share of seeds where the arm beats warm, and the tau share (tau_between^2 / prior
   variance, mean over quarters: the part of the prior's variance that is movement between runs,
   0 when the earlier quarters agree within their errors) of the planted and of the noise features.

3. A leak in one run of a series (simulated, persistent effects): a near copy of the return in
   the fourth quarter of eight, with the leak guard and without it: whether the leak quarter is
   flagged, how strong a prior the leak hands the next quarter, and warm's gain after the leak.

    python -m benchmarks.walk_forward [--start 2016-01-01] [--ranges 30] [--months 3]
        [--seeds 40] [--skip-embedded] [--prior-decay 1]
        [--ways cold warm 'warm gated' warm+curr 'cold uncentred']
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from persistence_pipeline.core.importance import ImportanceParams
from persistence_pipeline.core.priors import PriorParams
from persistence_pipeline.definitions import ASSET_CHECKS, ASSETS
from persistence_pipeline.resources import AnalysisSettings, ModelSettings, TradeSource, resources_under
from persistence_pipeline_tests.simulation import EW_HALF_LIFE_QUARTERS, SimulatedMarket, warm_against_cold

PERSISTENT = {"persistent_a": (0.05, 0.05), "persistent_b": (-0.04, -0.04)}
WALK_STEP = 0.03  # the random walk's sd of a quarter's step in IC
QUARTERS = 8


def random_walk(seed: int) -> dict[str, tuple[float, ...]]:
    """The planted features' IC per quarter: from their persistent values, a normal step each quarter."""
    rng = np.random.default_rng([seed, 7])
    return {
        name: tuple(start + np.cumsum(np.r_[0.0, rng.normal(0.0, WALK_STEP, QUARTERS - 1)]))
        for name, (start, _) in PERSISTENT.items()
    }


def flipping(seed: int) -> dict[str, tuple[float, ...]]:
    """The planted features' IC per quarter: their persistent values, changing sign every quarter."""
    return {name: tuple(start * (-1.0) ** np.arange(QUARTERS)) for name, (start, _) in PERSISTENT.items()}


SCENARIOS: dict[str, Callable[[int], dict[str, Any]]] = {
    "persistent": lambda seed: {"planted": PERSISTENT},
    "random walk": lambda seed: {"stepped": random_walk(seed)},
    "flipping": lambda seed: {"stepped": flipping(seed)},
    "null": lambda seed: {},
}

WAYS = {
    "cold": (ModelSettings(warm_start=False, curriculum=False), AnalysisSettings()),
    "warm": (ModelSettings(warm_start=True, curriculum=False), AnalysisSettings()),
    "warm gated": (ModelSettings(warm_start=True, curriculum=False), AnalysisSettings(prior_min_z=2.0)),
    "warm+curr": (ModelSettings(warm_start=True, curriculum=True), AnalysisSettings()),
    # the model's view without centring directional features (core/design.py): their effect
    "cold uncentred": (
        ModelSettings(warm_start=False, curriculum=False, centre_directional_features=False),
        AnalysisSettings(),
    ),
}
MIN_Z = {"warm": PriorParams().min_z, "warm gated": 2.0}  # the simulated arms


def ranges(start: str, count: int, months: int) -> list[tuple[str, str]]:
    first = pd.Timestamp(start)
    out = []
    for i in range(count):
        a = first + pd.DateOffset(months=i * months)
        b = a + pd.DateOffset(months=months) - pd.Timedelta(days=1)
        out.append((f"{a:%Y-%m-%d}", f"{b:%Y-%m-%d}"))
    return out


def run_way(
    settings: tuple[ModelSettings, AnalysisSettings], windows: list[tuple[str, str]], folder: Path
) -> pd.DataFrame:
    resources = resources_under(folder, TradeSource(), *settings)
    for a, b in windows:
        dg.materialize(
            [*ASSETS, *ASSET_CHECKS],
            resources=resources,
            tags={"dagster/asset_partition_range_start": a, "dagster/asset_partition_range_end": b},
        )
    with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            "SELECT m.run_key, m.range_end, m.n_train, m.oos_rank_ic, m.oos_hit_rate,"
            " coalesce(bool_or(h.suspect), false) AS suspect"
            " FROM run_metrics m LEFT JOIN feature_importance_history h USING (run_key)"
            " GROUP BY ALL ORDER BY m.range_end"
        ).df()


def paired(diff: np.ndarray) -> str:
    mean = diff.mean()
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    return f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]"


def simulated_seed(
    scenario: str,
    seed: int,
    min_z: float,
    leak_run: int | None = None,
    guard: bool = True,
    decay: float = PriorParams().decay,
) -> pd.DataFrame:
    market = SimulatedMarket(start="2021-01-01", end="2022-12-31", per_day=20, **SCENARIOS[scenario](seed))
    return warm_against_cold(
        market, seed, PriorParams(decay, min_z), ImportanceParams(perm_repeats=1), leak_run, guard
    )


def interval(values: np.ndarray) -> str:
    mean = values.mean()
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]"


def clean(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs the warm-start figures are judged on: not contaminated (no quarantined feature)."""
    return runs[~runs["suspect"]]


LEAK_RUN = 3  # the quarter (of eight) whose trades carry a leak, in the leak scenario


def leak_in_one_run(seeds: int, decay: float) -> None:
    """A leak in one quarter of eight (a near copy of the return, rank IC about 0.9), persistent
    effects otherwise: with the leak guard (the product) and without it (the screen switched off)."""
    print(f"\n## A leak in quarter {LEAK_RUN + 1} of 8, persistent effects, {seeds} seeds\n")
    print(
        "| leak guard | leak quarter flagged suspect | other quarters flagged | cold OOS rank IC of the leak"
        " quarter | leak prior abs(z), next quarter | prior weight, next quarter"
        " | IC gain after the leak (clean quarters), 95% CI |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for guard in (True, False):
        runs = [
            simulated_seed("persistent", seed, PriorParams().min_z, LEAK_RUN, guard, decay)
            for seed in range(seeds)
        ]
        leak = pd.concat([r[r["run"] == LEAK_RUN] for r in runs])
        following = pd.concat([r[r["run"] == LEAK_RUN + 1] for r in runs])
        others = pd.concat([r[r["run"] != LEAK_RUN] for r in runs])
        after = np.array([clean(r[r["run"] > LEAK_RUN])["ic_gain"].mean() for r in runs])
        print(
            f"| {'on' if guard else 'off'} | {leak['suspect'].mean():.0%} | {others['suspect'].mean():.1%}"
            f" | {leak['cold_ic'].mean():+.3f} | {following['leak_prior_z'].median():.2f}"
            f" | {following['prior_weight'].median():.2f} | {interval(after)} |"
        )


def simulated(seeds: int, decay: float) -> None:
    print(f"\n## Simulated: warm (prior decay {decay:g}) against cold, {seeds} seeds x 7 warm quarters\n")
    print(
        "| scenario | prior | cold OOS rank IC | IC gain, 95% CI | cold hit rate - base"
        " | gain in hit rate - base, 95% CI"
        " | warm > cold (seeds) | power (5%, one-sided) | median prior weight | wall s |"
    )
    print("|---|---|---:|---|---:|---|---:|---:|---:|---:|")
    every: dict[str, list[pd.DataFrame]] = {}  # per scenario, the runs of the default prior
    for name, (way, min_z) in itertools.product(SCENARIOS, MIN_Z.items()):
        t = time.perf_counter()
        runs = [clean(simulated_seed(name, seed, min_z, decay=decay)) for seed in range(seeds)]
        if min_z == PriorParams().min_z:
            every[name] = runs
        gains = np.array([r["ic_gain"].mean() for r in runs])
        edges = np.array([r["edge_gain"].mean() for r in runs])
        significant = [
            stats.ttest_1samp(r["ic_gain"], 0.0, alternative="greater").pvalue < 0.05 for r in runs
        ]
        pooled = pd.concat(runs)
        print(
            f"| {name} | {way} (min_z {min_z:g}) | {pooled['cold_ic'].mean():+.4f} | {interval(gains)}"
            f" | {pooled['cold_edge'].mean():+.4f} | {interval(edges)} | {np.mean(gains > 0):.0%}"
            f" | {np.mean(significant):.0%} | {pooled['prior_weight'].median():.2f}"
            f" | {time.perf_counter() - t:.0f} |"
        )
    against_history(every, seeds, PriorParams(decay))


def share(values: pd.Series) -> str:
    """The mean of a tau share, n/a without any (no planted feature)."""
    return "n/a" if values.isna().all() else f"{values.mean():.2f}"


def against_history(every: dict[str, list[pd.DataFrame]], seeds: int, prior: PriorParams) -> None:
    """Warm (every prior) against the cold ridges on the history, on the runs of `simulated`."""
    print(
        f"\n## Simulated: warm (decay {prior.decay:g}, min_z {prior.min_z:g}) against cold ridges on the"
        f" history, {seeds} seeds x 7 warm quarters (EW: half-life {EW_HALF_LIFE_QUARTERS:g} quarters)\n"
    )
    print(
        "| scenario | cold OOS rank IC | warm | all-history | EW | warm - cold, 95% CI"
        " | all-history - warm, 95% CI | all-history > warm (seeds) | EW - warm, 95% CI"
        " | EW > warm (seeds) | tau share, planted | tau share, noise |"
    )
    print("|---|---:|---:|---:|---:|---|---|---:|---|---:|---:|---:|")
    for name, runs in every.items():
        pooled = pd.concat(runs)
        gain = np.array([r["ic_gain"].mean() for r in runs])
        history = np.array([(r["history_ic"] - r["warm_ic"]).mean() for r in runs])
        weighted = np.array([(r["ew_ic"] - r["warm_ic"]).mean() for r in runs])
        print(
            f"| {name} | {pooled['cold_ic'].mean():+.4f} | {pooled['warm_ic'].mean():+.4f}"
            f" | {pooled['history_ic'].mean():+.4f} | {pooled['ew_ic'].mean():+.4f} | {interval(gain)}"
            f" | {interval(history)} | {np.mean(history > 0):.0%} | {interval(weighted)}"
            f" | {np.mean(weighted > 0):.0%} | {share(pooled['tau_share_signal'])}"
            f" | {share(pooled['tau_share_noise'])} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--start", default="2016-01-01")
    parser.add_argument("--ranges", type=int, default=30)
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=40, help="0: skip the simulated part")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument(
        "--prior-decay",
        type=float,
        default=PriorParams().decay,
        help="the simulated arms' prior decay (the embedded ways take AnalysisSettings')",
    )
    parser.add_argument("--ways", nargs="+", choices=list(WAYS), default=list(WAYS))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.seeds:
        simulated(args.seeds, args.prior_decay)
        leak_in_one_run(args.seeds, args.prior_decay)
    if args.skip_embedded:
        return
    windows = ranges(args.start, args.ranges, args.months)
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.ways:
            settings = WAYS[name]
            t = time.perf_counter()
            results[name] = run_way(settings, windows, Path(tmp) / name.replace("+", "_").replace(" ", "_"))
            seconds[name] = time.perf_counter() - t
    table = results[args.ways[0]][["run_key", "n_train"]].copy()
    suspect = np.zeros(len(table), dtype=bool)
    for name, frame in results.items():
        table[f"ic {name}"] = frame["oos_rank_ic"].to_numpy()
        table[f"hit {name}"] = frame["oos_hit_rate"].to_numpy()
        suspect |= frame["suspect"].to_numpy(dtype=bool)
    table["suspect"] = suspect  # a run contaminated in any way is left out of the comparison
    print(f"## Walk-forward: {args.ranges} consecutive {args.months}-month ranges from {args.start}\n")
    print(table.to_markdown(index=False, floatfmt="+.4f"))
    print(
        "\n| way | mean OOS rank IC | mean hit rate | IC - cold, 95% CI (runs 2..n)"
        " | hit rate - cold, 95% CI | wall s |"
    )
    print("|---|---:|---:|---|---|---:|")
    print(f"(runs 2..n without suspect runs: {int((~suspect[1:]).sum())} of {len(suspect) - 1})")
    for name in args.ways:
        ic, hit = table[f"ic {name}"].to_numpy(), table[f"hit {name}"].to_numpy()
        if name == "cold" or "cold" not in results:
            versus = ("", "")
        else:
            kept = ~suspect[1:]
            versus = (
                paired((ic[1:] - table["ic cold"].to_numpy()[1:])[kept]),
                paired((hit[1:] - table["hit cold"].to_numpy()[1:])[kept]),
            )
        print(
            f"| {name} | {ic.mean():+.4f} | {hit.mean():.4f} | {versus[0]} | {versus[1]}"
            f" | {seconds[name]:.0f} |"
        )


if __name__ == "__main__":
    main()
