"""What the evidence can detect at a given trade density: the power of each verdict and its false
alarms, on simulated trade logs whose truth is known (tests' simulation.py), at the embedded data's
density (about 25 trades a week on 6 symbols), at 20 trades a day on 8 symbols and at 100 a day on
100 symbols.

Each seed simulates two years (2021-2022) with these features:

    steady          IC 0.1 throughout
    fade_0.2        IC falling linearly from 0.2 to 0 over the two years
    fade_0.1        IC falling linearly from 0.1 to 0 over the two years
    broken          IC 0.1, then 0 from 2022-01-03 (for the alpha monitor)
    noise_00..09    no effect

The evidence (core/evidence.py, default settings: IC within side x strategy cells, the period
adapted to the density) is read as of three dates: after 6 months, after one year (half of each
fade gone) and after two years; the monitor (core/monitor.py) 8 weeks after the break. Per density
the table gives, over the seeds: the share of noise rows with q < 0.05 and flagged decaying (false
alarms, nominal 5%), the share of `steady` found nonzero, wrongly flagged decaying and rightly
called 'not decaying', the share of each fade flagged decaying and called 'not decaying' (the
data rule out a fade of a quarter of the IC: a fade that lost about a quarter in six months is at the
margin) by each date, the median
`decay_mde` (the smallest fade over the series the trend test finds with 80% probability) and the
median persistence of `fade_0.2` and `steady` at two years, and for the monitor: the break
monitored and flagged, its verdict 'cannot tell', its median `ic_change_mde`, and false alarms on
`steady`.

    python -m benchmarks.detection [--seeds 20]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from persistence_pipeline.core.evidence import EvidenceParams, PeriodIC, feature_evidence, period_ic
from persistence_pipeline.core.monitor import MonitorParams, alpha_monitor
from persistence_pipeline_tests.simulation import SimulatedMarket, simulated_trades

DENSITIES = {
    "embedded (5 a day, 6 symbols)": (5, 6),
    "20 a day, 8 symbols": (20, 8),
    "100 a day, 100 symbols": (100, 100),
}
BREAK = "2022-01-03"
AS_OF = {"6 months": "2021-07-05", "1 year": "2022-01-03", "2 years": "2023-01-02"}
PARAMS = EvidenceParams()
MONITOR = MonitorParams()
FAR_FUTURE = pd.Timestamp("2100-01-01", tz="UTC")


def market(per_day: int, n_symbols: int) -> SimulatedMarket:
    return SimulatedMarket(
        start="2021-01-01",
        end="2022-12-31",
        per_day=per_day,
        n_symbols=n_symbols,
        n_noise=10,
        planted={"steady": (0.1, 0.1), "fade_0.2": (0.2, 0.0), "fade_0.1": (0.1, 0.0)},
        breaks={"broken": (0.1, 0.0, BREAK)},
    )


def periods_before(series: PeriodIC, date: str) -> int:
    """How many of the series' periods have ended by `date` (the series read then)."""
    ends = series.ic.index + pd.Timedelta(days=series.period_days)
    return int((ends <= pd.Timestamp(date, tz="UTC")).sum())


def one_seed(sim: SimulatedMarket, seed: int) -> dict[str, object]:
    trades = simulated_trades(sim, seed)
    full = period_ic(trades, sim.features, PARAMS, FAR_FUTURE)
    row: dict[str, object] = {"period_days": full.period_days}
    for label, date in AS_OF.items():
        table = feature_evidence(full.head(periods_before(full, date)), PARAMS).set_index("feature")
        noise = table.index.str.startswith("noise")
        row[f"noise q<0.05 {label}"] = float((table.loc[noise, "ic_q_value"] < 0.05).mean())
        row[f"noise decaying {label}"] = float(table.loc[noise, "decaying"].mean())
        row[f"steady nonzero {label}"] = bool(table.loc["steady", "ic_q_value"] < 0.05)
        row[f"steady decaying {label}"] = bool(table.loc["steady", "decaying"])
        for fade in ["fade_0.2", "fade_0.1"]:
            row[f"{fade} decaying {label}"] = bool(table.loc[fade, "decaying"])
            row[f"{fade} not decaying {label}"] = table.loc[fade, "decay_verdict"] == "not decaying"
        row[f"steady not decaying {label}"] = table.loc["steady", "decay_verdict"] == "not decaying"
        row[f"decay_mde {label}"] = table.loc["fade_0.2", "decay_mde"]
        row[f"persistence {label}"] = table.loc["fade_0.2", "persistence"]
        row[f"steady persistence {label}"] = table.loc["steady", "persistence"]
    at = periods_before(full, BREAK) + MONITOR.recent_periods * 7 // full.period_days
    series = full.head(at)
    q = feature_evidence(series, PARAMS).set_index("feature")["ic_q_value"]
    monitor = alpha_monitor(series, q, MONITOR).set_index("feature")
    row["break flagged"] = bool(monitor.loc["broken", "broken_down"])
    row["break cannot tell"] = monitor.loc["broken", "monitor_verdict"] == "cannot tell"
    row["break monitored"] = bool(monitor.loc["broken", "monitored"])
    row["ic_change_mde"] = monitor.loc["broken", "ic_change_mde"]
    row["steady alarm"] = bool(monitor.loc["steady", "broken_down"])
    return row


def pct(values: pd.Series) -> str:
    return f"{100 * values.astype(float).mean():.0f}%"


def median(values: pd.Series) -> str:
    values = values.astype(float).dropna()
    return f"{values.median():.3f}" if len(values) else "-"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    columns: dict[str, dict[str, str]] = {}
    for name, (per_day, n_symbols) in DENSITIES.items():
        started = time.perf_counter()
        rows = pd.DataFrame([one_seed(market(per_day, n_symbols), seed) for seed in range(args.seeds)])
        figures = {"period (days)": f"{int(rows['period_days'].median())}"}
        for label in AS_OF:
            figures[f"noise q < 0.05, {label}"] = pct(rows[f"noise q<0.05 {label}"])
            figures[f"noise decaying, {label}"] = pct(rows[f"noise decaying {label}"])
        for label in AS_OF:
            figures[f"steady IC 0.1 nonzero, {label}"] = pct(rows[f"steady nonzero {label}"])
            figures[f"steady IC 0.1 decaying, {label}"] = pct(rows[f"steady decaying {label}"])
        for label in AS_OF:
            figures[f"steady IC 0.1 'not decaying', {label}"] = pct(rows[f"steady not decaying {label}"])
        for fade in ["fade_0.2", "fade_0.1"]:
            for label in AS_OF:
                figures[f"{fade} -> 0 decaying, {label}"] = pct(rows[f"{fade} decaying {label}"])
            for label in AS_OF:
                figures[f"{fade} -> 0 called 'not decaying', {label}"] = pct(
                    rows[f"{fade} not decaying {label}"]
                )
        for label in AS_OF:
            figures[f"decay_mde (fade_0.2), {label}"] = median(rows[f"decay_mde {label}"])
        figures["persistence fade_0.2, 2 years (truth 0)"] = median(rows["persistence 2 years"])
        figures["persistence steady, 2 years (truth 1)"] = median(rows["steady persistence 2 years"])
        figures["break 0.1 -> 0 monitored"] = pct(rows["break monitored"])
        figures["break flagged within 8 weeks"] = pct(rows["break flagged"])
        figures["break verdict 'cannot tell'"] = pct(rows["break cannot tell"])
        figures["ic_change_mde of the break"] = median(rows["ic_change_mde"])
        figures["steady false alarm"] = pct(rows["steady alarm"])
        figures["wall s per seed"] = f"{(time.perf_counter() - started) / args.seeds:.1f}"
        columns[name] = figures
    table = pd.DataFrame(columns)
    print(f"\n## Detection by density, {args.seeds} seeds\n")
    print("| figure | " + " | ".join(table.columns) + " |")
    print("|---|" + "---:|" * len(table.columns))
    for figure, values in table.iterrows():
        print(f"| {figure} | " + " | ".join(str(v) for v in values) + " |")


if __name__ == "__main__":
    main()
