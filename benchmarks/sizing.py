"""Does alpha-based sizing pay after costs? The three OOS books of core/sizing.py (sized, equal,
actual) on simulated markets whose truth is known (tests' simulation.py: one year, 40 trades a day on
30 symbols, 10 noise features), through the functions profit_model calls (train_and_evaluate on
labels net of costs, walk_forward_books, book_performance), many seeds:

    null        no signal
    ic 0.05     one planted feature with IC 0.05
    ic 0.10     one planted feature with IC 0.10

at costs of 0, 5 and 10 bps per side. Per scenario and cost: the median over seeds of each book's
net Sharpe and net mean return per unit of notional (bps), the share of seeds where the sized
book's net Sharpe beats the actual one's and the equal one's, and the median exposure of the sized
book over the actual one's. Beside it, the cost of sizing: the median time of walk_forward_books
(the fold models' predictions on their training trades) over that of train_and_evaluate.

    python -m benchmarks.sizing [--seeds 40]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import pandas as pd

from persistence_pipeline.core.model import ModelParams, train_and_evaluate
from persistence_pipeline.core.sizing import SizingParams, book_performance, walk_forward_books
from persistence_pipeline_tests.simulation import SimulatedMarket, simulated_trades

SCENARIOS = {"null": {}, "ic 0.05": {"signal": (0.05, 0.05)}, "ic 0.10": {"signal": (0.1, 0.1)}}
COSTS = (0.0, 5.0, 10.0)


def books(planted: dict, seed: int, cost_bps: float, timings: dict[str, list[float]]) -> pd.DataFrame:
    market = SimulatedMarket(
        start="2021-01-01", end="2021-12-31", per_day=40, n_symbols=30, n_noise=10, planted=planted
    )
    trades = simulated_trades(market, seed)
    sizing = SizingParams(cost_bps=cost_bps)
    X = trades[market.features].to_numpy()
    y = trades["return"].to_numpy() - sizing.round_trip_cost
    started = time.perf_counter()
    fitted = train_and_evaluate(
        X, y, trades["entry_time"].to_numpy(), trades["exit_time"].to_numpy(), market.features, ModelParams()
    )
    timings["model"].append(time.perf_counter() - started)
    started = time.perf_counter()
    oos = walk_forward_books(fitted, trades, X, y, None, sizing.max_position)
    timings["sizing"].append(time.perf_counter() - started)
    return book_performance(oos, sizing).query("costs == 'net'").set_index("book")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=40)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="no explicit representation of timezones")
    timings: dict[str, list[float]] = {"model": [], "sizing": []}
    rows = []
    for name, planted in SCENARIOS.items():
        for cost in COSTS:
            tables = [books(planted, seed, cost, timings) for seed in range(args.seeds)]
            sharpe = pd.DataFrame([t["sharpe"] for t in tables])
            mean_bps = pd.DataFrame([t["mean_return"] * 10_000 for t in tables])
            exposure = np.array([t.loc["sized", "exposure"] / t.loc["actual", "exposure"] for t in tables])
            rows.append(
                {
                    "scenario": name,
                    "cost bps/side": f"{cost:g}",
                    **{f"Sharpe {b}": f"{sharpe[b].median():+.2f}" for b in ("sized", "equal", "actual")},
                    **{
                        f"bps/notional {b}": f"{mean_bps[b].median():+.1f}"
                        for b in ("sized", "equal", "actual")
                    },
                    "sized > actual": f"{(sharpe['sized'] > sharpe['actual']).mean():.2f}",
                    "sized > equal": f"{(sharpe['sized'] > sharpe['equal']).mean():.2f}",
                    "sized exposure": f"{np.median(exposure):.2f}",
                }
            )
    table = pd.DataFrame(rows)
    print(f"{args.seeds} seeds; medians over seeds; net of costs\n")
    print(table.to_markdown(index=False))
    model, sizing = statistics.median(timings["model"]), statistics.median(timings["sizing"])
    print(
        f"\nmedian per run: train_and_evaluate {1000 * model:.0f} ms, walk_forward_books "
        f"{1000 * sizing:.0f} ms (ratio {sizing / model:.2f})"
    )


if __name__ == "__main__":
    main()
