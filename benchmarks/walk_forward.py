"""Does the continual-learning loop help? Consecutive ranges on the embedded data, three ways:

    cold        every run a plain ridge (warm_start and curriculum off)
    warm        ridge pulled toward the EMA priors of the earlier runs
    warm+curr   warm, and training trades weighted by the latest run's regime weights

Every run goes through the real pipeline (dg.materialize of the whole code location over the
range, into one warehouse per way). Prints per-run and mean out-of-sample rank IC and hit rate, and
the paired difference to cold start over the runs after the first (the first is cold in every
way) with a 95% t confidence interval.

    python benchmarks/walk_forward.py [--start 2016-01-01] [--ranges 30] [--months 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from persistence_pipeline.definitions import ASSET_CHECKS, ASSETS
from persistence_pipeline.resources import ModelSettings, TradeSource, resources_under

WAYS = {
    "cold": ModelSettings(warm_start=False, curriculum=False),
    "warm": ModelSettings(warm_start=True, curriculum=False),
    "warm+curr": ModelSettings(warm_start=True, curriculum=True),
}


def ranges(start: str, count: int, months: int) -> list[tuple[str, str]]:
    first = pd.Timestamp(start)
    out = []
    for i in range(count):
        a = first + pd.DateOffset(months=i * months)
        b = a + pd.DateOffset(months=months) - pd.Timedelta(days=1)
        out.append((f"{a:%Y-%m-%d}", f"{b:%Y-%m-%d}"))
    return out


def run_way(settings: ModelSettings, windows: list[tuple[str, str]], folder: Path) -> pd.DataFrame:
    resources = resources_under(folder, TradeSource(), settings)
    for a, b in windows:
        dg.materialize(
            [*ASSETS, *ASSET_CHECKS],
            resources=resources,
            tags={"dagster/asset_partition_range_start": a, "dagster/asset_partition_range_end": b},
        )
    with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            "SELECT run_key, n_train, oos_rank_ic, oos_hit_rate FROM run_metrics ORDER BY range_end"
        ).df()


def paired(diff: np.ndarray) -> str:
    mean = diff.mean()
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    return f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--start", default="2016-01-01")
    parser.add_argument("--ranges", type=int, default=30)
    parser.add_argument("--months", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    windows = ranges(args.start, args.ranges, args.months)
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, settings in WAYS.items():
            t = time.perf_counter()
            results[name] = run_way(settings, windows, Path(tmp) / name.replace("+", "_"))
            seconds[name] = time.perf_counter() - t
    table = results["cold"][["run_key", "n_train"]].copy()
    for name, frame in results.items():
        table[f"ic {name}"] = frame["oos_rank_ic"].to_numpy()
        table[f"hit {name}"] = frame["oos_hit_rate"].to_numpy()
    print(f"## Walk-forward: {args.ranges} consecutive {args.months}-month ranges from {args.start}\n")
    print(table.to_markdown(index=False, floatfmt="+.4f"))
    print(
        "\n| way | mean OOS rank IC | mean hit rate | IC - cold, 95% CI (runs 2..n)"
        " | hit rate - cold, 95% CI | wall s |"
    )
    print("|---|---:|---:|---|---|---:|")
    for name in WAYS:
        ic, hit = table[f"ic {name}"].to_numpy(), table[f"hit {name}"].to_numpy()
        if name == "cold":
            versus = ("", "")
        else:
            versus = (
                paired(ic[1:] - table["ic cold"].to_numpy()[1:]),
                paired(hit[1:] - table["hit cold"].to_numpy()[1:]),
            )
        print(
            f"| {name} | {ic.mean():+.4f} | {hit.mean():.4f} | {versus[0]} | {versus[1]}"
            f" | {seconds[name]:.0f} |"
        )


if __name__ == "__main__":
    main()
