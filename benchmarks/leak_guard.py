"""The leak guard judged both ways where users run it: its false-positive rate on honest features
and its power on planted leaks, in the default 90-day window.

Honest features: every model column of the embedded data (six stocks, about 25 trades a week) in
90-day windows stepping one month over 2013-2023, three-year windows and the whole span, on all six
symbols and on each symbol alone (single-instrument bars); and simulated entry-time features with a
planted IC of 0.05, 0.10 and 0.15. Leaks: simulated features whose rank IC with the realized return
is 0.2, 0.3, 0.5 and 1.0 (tests' simulation.py), at 5, 25 and 100 trades a day: on 200 symbols held
one day (independent trades), and on 8 symbols held one day or 1-10 days (trades of one symbol and
day share its move; overlapping holdings on a common market).

    python -m benchmarks.leak_guard [--seeds 40] [--ceiling 0.15] [--level 0.001]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from persistence_pipeline.core.dataset import training_set
from persistence_pipeline.core.design import DesignParams
from persistence_pipeline.core.leakage import LeakScreenParams, TradeKeys, screen_features, screen_reach
from persistence_pipeline.core.strategies import generate_trades
from persistence_pipeline.source_files import load_embedded_bars
from persistence_pipeline_tests.simulation import SimulatedMarket, simulated_trades

HONEST = {"honest_05": 0.05, "honest_10": 0.10, "honest_15": 0.15}
LEAKS = {"leak_20": 0.2, "leak_30": 0.3, "leak_50": 0.5, "leak_100": 1.0}


def embedded_windows(
    start: str = "2013-01-01", end: str = "2023-09-22"
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """90-day windows starting each month, three-year windows starting each year, the whole span."""
    first, last = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    windows = [
        (a, a + pd.Timedelta(days=90)) for a in pd.date_range(first, last - pd.Timedelta(days=90), freq="MS")
    ]
    windows += [
        (a, a + pd.DateOffset(years=3))
        for a in pd.date_range(first, last - pd.DateOffset(years=3), freq="YS")
    ]
    return [*windows, (first, last)]


def screened(
    trades: pd.DataFrame, end: pd.Timestamp, params: LeakScreenParams
) -> tuple[int, bool, list[str]] | None:
    """(model columns tested, whether the test decides in any group, columns flagged) for one window
    of built-in-strategy trades, as profit_model screens them (None when the window has fewer than
    50 labelled trades). Where no group decides, only a near copy of the label can be flagged."""
    data = training_set(trades, end, DesignParams())
    if len(data.y) < 50:
        return None
    keys = TradeKeys.of(data.trades)
    flagged = screen_features(data.X, data.y, data.features, params, keys)
    return len(data.features), bool(screen_reach(params, keys)["decides"].any()), flagged["feature"].tolist()


def embedded_false_positives(params: LeakScreenParams) -> pd.DataFrame:
    trades = generate_trades(load_embedded_bars())
    rows = []
    for symbol in [None, *sorted(trades["symbol"].unique())]:
        source = trades if symbol is None else trades[trades["symbol"] == symbol]
        counts = {
            "windows": 0,
            "windows the test decides": 0,
            "windows flagged": 0,
            "columns tested": 0,
            "columns the test judges": 0,
            "columns flagged": 0,
        }
        for start, end in embedded_windows():
            result = screened(
                source[(source["entry_time"] >= start) & (source["entry_time"] < end)], end, params
            )
            if result is None:
                continue
            tested, decides, flagged = result
            counts["windows"] += 1
            counts["windows the test decides"] += decides
            counts["columns the test judges"] += tested * decides
            counts["windows flagged"] += bool(flagged)
            counts["columns tested"] += tested
            counts["columns flagged"] += len(flagged)
            if flagged:
                print(f"  flagged: {symbol or 'all six'} {start:%Y-%m-%d}..{end:%Y-%m-%d}: {flagged}")
        rows.append({"bars": "all six symbols" if symbol is None else f"{symbol} alone", **counts})
    return pd.DataFrame(rows)


def embedded_power(params: LeakScreenParams, seed: int = 0) -> dict[str, float]:
    """Share of the embedded data's quarters in which a leak planted beside the honest columns (the
    label's normal scores plus noise, rank IC 0.5 or 1.0) is flagged."""
    trades, rng = generate_trades(load_embedded_bars()), np.random.default_rng(seed)
    caught, quarters = dict.fromkeys(LEAKS, 0), 0
    for start in pd.date_range("2013-01-01", "2023-06-01", freq="QS", tz="UTC"):
        end = start + pd.Timedelta(days=90)
        data = training_set(
            trades[(trades["entry_time"] >= start) & (trades["entry_time"] < end)], end, DesignParams()
        )
        if len(data.y) < 50:
            continue
        quarters += 1
        scores = stats.norm.ppf(stats.rankdata(data.y) / (len(data.y) + 1))
        for name, ic in LEAKS.items():
            pearson = 2.0 * np.sin(np.pi * ic / 6.0)
            leak = scores + np.sqrt(max(1.0 / pearson**2 - 1.0, 0.0)) * rng.normal(size=len(scores))
            found = screen_features(
                np.column_stack([data.X, leak]),
                data.y,
                [*data.features, name],
                params,
                TradeKeys.of(data.trades),
            )
            caught[name] += name in set(found["feature"])
    return {"quarters": quarters, **{name: count / quarters for name, count in caught.items()}}


def simulated_rates(
    params: LeakScreenParams, per_day: int, holding: int, n_symbols: int, seeds: int
) -> dict[str, float]:
    """Share of seeds in which each honest feature and each leak is flagged in one 90-day window."""
    market = SimulatedMarket(
        start="2021-01-01",
        end="2021-03-31",
        per_day=per_day,
        max_holding_days=holding,
        n_symbols=n_symbols,
        n_noise=5,
        planted={name: (ic, ic) for name, ic in HONEST.items()},
        leaks=LEAKS,
    )
    flagged = {name: 0 for name in [*market.columns]}
    for seed in range(seeds):
        trades = simulated_trades(market, seed)
        found = screen_features(
            trades[market.columns].to_numpy(dtype="float64"),
            trades["return"].to_numpy(dtype="float64"),
            market.columns,
            params,
            TradeKeys.of(trades),
        )
        for name in found["feature"]:
            flagged[name] += 1
    noise = [f for f in market.features if f.startswith("noise_")]
    return {
        "noise": sum(flagged[f] for f in noise) / (seeds * len(noise)),
        **{name: flagged[name] / seeds for name in [*HONEST, *LEAKS]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--ceiling", type=float, default=LeakScreenParams().ceiling)
    parser.add_argument("--level", type=float, default=LeakScreenParams().level)
    args = parser.parse_args()
    params = LeakScreenParams(ceiling=args.ceiling, level=args.level)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    print(f"Leak guard: ceiling {params.ceiling}, one-sided level {params.level}, {args.seeds} seeds\n")
    started = time.perf_counter()
    print("Honest features of the embedded data (built-in strategies), every model column:")
    print(embedded_false_positives(params).to_markdown(index=False))
    print("\nLeaks planted in the embedded data's quarters: share flagged")
    print(pd.DataFrame([embedded_power(params)]).to_markdown(index=False, floatfmt=".3f"))
    rows = []
    for n_symbols, holding in [(200, 1), (8, 1), (8, 10)]:
        for per_day in (5, 25, 100):
            rates = simulated_rates(params, per_day, holding, n_symbols, args.seeds)
            rows.append(
                {"symbols": n_symbols, "trades a day": per_day, "holding days": f"1..{holding}", **rates}
            )
    print(
        "\nSimulated 90-day windows (200 symbols held a day: independent trades; 8 symbols: trades of a "
        "symbol and day share its move): share of seeds flagged "
        "(honest IC 0.05-0.15, leaks IC 0.2-1.0)"
    )
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
