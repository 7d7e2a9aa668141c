"""Figures for ensemble alpha (core/ensemble.py), all measured in one run of this script:

1. Judged on simulated markets whose truth is known, over --seeds seeds, with the pipeline's model
   and importance settings: a year of trades as 6 two-month runs (non-overlapping) and as 9
   four-month runs a month apart (overlapping). Per market and windows: the mean OOS rank IC of the
   ridge, the trees and their average; the share of runs in which a noise feature is in both
   models' top 5 of 21 (against (5/21)^2 if the models ranked independently and 5/21 if they always
   agreed), the largest such share of any noise feature, and the share of noise features in both
   top 5 in at least half the runs (a false "the models agree"); the same for a planted feature
   (power). Markets: no signal; a linear planted feature; a U-shaped one (its return rises with |x|:
   invisible to a linear model).
2. On the embedded data: the ridge, the trees and their average on three half-year ranges (with
   their OOS trades: a quarter has too few for an IC to mean anything), and the
   wall time of profit_model + feature_importance with and without the trees beside the ridge
   (medians of --repeats).

    python -m benchmarks.ensemble [--seeds 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from persistence_pipeline.assets.feature_importance import feature_importance
from persistence_pipeline.assets.profit_model import profit_model
from persistence_pipeline.assets.trades import trades
from persistence_pipeline.core.ensemble import ENSEMBLE, ensemble_view
from persistence_pipeline.core.importance import ImportanceParams
from persistence_pipeline.core.model import ModelParams
from persistence_pipeline.resources import ModelSettings, TradeSource, Warehouse, resources_under
from persistence_pipeline_tests.simulation import SimulatedMarket, ensemble_windows

TOP_K = 5
MONTHS = pd.date_range("2021-01-01", "2021-12-01", freq="MS")
WINDOWS = {
    "non-overlapping (6 x 2 months)": [
        (str(m.date()), str((m + pd.offsets.MonthEnd(2)).date())) for m in MONTHS[::2]
    ],
    "overlapping (9 x 4 months, 1 apart)": [
        (str(m.date()), str((m + pd.offsets.MonthEnd(3)).date())) for m in MONTHS[:9]
    ],
}
MARKETS = {
    "no signal": SimulatedMarket(start="2021-01-01", end="2021-12-31", per_day=40, n_symbols=30, n_noise=21),
    "planted IC 0.05": SimulatedMarket(
        start="2021-01-01",
        end="2021-12-31",
        per_day=40,
        n_symbols=30,
        n_noise=20,
        planted={"signal": (0.05, 0.05)},
    ),
    "U-shaped IC 0.10": SimulatedMarket(
        start="2021-01-01",
        end="2021-12-31",
        per_day=40,
        n_symbols=30,
        n_noise=20,
        u_shaped={"signal": 0.10},
    ),
}
HALVES = [("2021-01-04", "2021-06-30"), ("2021-07-01", "2021-12-31"), ("2022-01-03", "2022-06-30")]


def simulated(seeds: int) -> pd.DataFrame:
    rows = []
    for market_name, market in MARKETS.items():
        n_features = len(market.features)
        for windows_name, windows in WINDOWS.items():
            for seed in range(seeds):
                agreement, metrics, ranges = ensemble_windows(
                    market, seed, windows, ["ridge", "gbt"], TOP_K, ModelParams(), ImportanceParams()
                )
                view = ensemble_view(agreement, ranges).set_index("feature")["all_models_top_k_frequency"]
                noise = view[view.index.str.startswith("noise")]
                ic = metrics.groupby("model_kind")["oos_rank_ic"].mean()
                rows.append(
                    {
                        "market": market_name,
                        "windows": windows_name,
                        "seed": seed,
                        "ic_ridge": ic["ridge"],
                        "ic_gbt": ic["gbt"],
                        "ic_ensemble": ic[ENSEMBLE],
                        "spearman": agreement.groupby("run_key")["rank_spearman"].first().mean(),
                        "noise_share": noise.mean(),
                        "noise_max_share": noise.max(),
                        "noise_half": (noise >= 0.5).mean(),
                        "signal_half": float(view.get("signal", float("nan")) >= 0.5)
                        if "signal" in view
                        else float("nan"),
                        "signal_share": view.get("signal", float("nan")),
                        "chance_low": (TOP_K / n_features) ** 2,
                        "chance_high": TOP_K / n_features,
                    }
                )
    return pd.DataFrame(rows)


def embedded(repeats: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """OOS rank IC per member on each half year, and the seconds of the model and importance stages."""
    ics, seconds = [], []
    for members in ([], ["gbt"]):
        for repeat in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                resources = resources_under(Path(tmp), TradeSource(), ModelSettings(ensemble=members))
                for first, last in HALVES:
                    tags = {
                        "dagster/asset_partition_range_start": first,
                        "dagster/asset_partition_range_end": last,
                    }
                    dg.materialize([trades], resources=resources, tags=tags)
                    start = time.perf_counter()
                    dg.materialize(
                        [trades, profit_model, feature_importance],
                        selection=[profit_model, feature_importance],
                        resources=resources,
                        tags=tags,
                    )
                    seconds.append(
                        {
                            "ensemble": "+".join(["ridge", *members]),
                            "half": first,
                            "repeat": repeat,
                            "seconds": time.perf_counter() - start,
                        }
                    )
                    if members and repeat == 0:
                        db = Warehouse(path=str(Path(tmp) / "warehouse.duckdb")).database()
                        ics.append(
                            db.query(
                                "SELECT model_kind, oos_rank_ic, n_oos FROM ensemble_metrics"
                                " WHERE run_key = ?",
                                [f"{first}..{last}/ridge"],
                            ).assign(half=first)
                        )
    metrics = pd.concat(ics)
    table = metrics.pivot(index="half", columns="model_kind", values="oos_rank_ic")
    table["n_oos"] = metrics.groupby("half")["n_oos"].first()
    return table, pd.DataFrame(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    table = simulated(args.seeds)
    print(f"## Simulated markets ({args.seeds} seeds, mean over seeds; shares of runs)\n")
    summary = table.groupby(["market", "windows"], sort=False).agg(
        ic_ridge=("ic_ridge", "mean"),
        ic_gbt=("ic_gbt", "mean"),
        ic_ensemble=("ic_ensemble", "mean"),
        spearman=("spearman", "mean"),
        noise_share=("noise_share", "mean"),
        noise_max_share=("noise_max_share", "median"),
        noise_half=("noise_half", "mean"),
        chance_low=("chance_low", "first"),
        chance_high=("chance_high", "first"),
        signal_share=("signal_share", "mean"),
        signal_half=("signal_half", "mean"),
    )
    print(summary.to_markdown(floatfmt=".3f"))
    print(
        "\nnoise_max_share: median over seeds of the largest share of any noise feature; noise_half and"
        " signal_half: the share of noise features (of seeds, for the planted one) in both top 5 in at"
        " least half the runs.\n"
    )

    ic, seconds = embedded(args.repeats)
    print("## Embedded data: OOS rank IC per half year\n")
    print(ic.to_markdown(floatfmt="+.4f"))
    print(f"\n## Embedded data: profit_model + feature_importance per half year (median of {args.repeats})\n")
    medians = seconds.groupby(["half", "ensemble"])["seconds"].median().unstack()
    medians["ratio"] = medians["ridge+gbt"] / medians["ridge"]
    print(medians.to_markdown(floatfmt=".2f"))
    print(f"\nmedian ratio over half years: {medians['ratio'].median():.2f}")


if __name__ == "__main__":
    main()
