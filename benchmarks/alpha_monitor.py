"""Is the alpha monitor honest? False alarms without a change and power on a planted breakdown, on
simulated trades whose truth is known (tests' simulation.py), through the functions the feature_alpha asset
calls (period_ic, feature_evidence, alpha_monitor), many seeds: a pipeline run costs seconds, and
the monitor's verdict as of a date is that of the complete weeks before it whichever runs stored
them (test_evidence.py), so each seed's IC series is computed once and cut at every run end.

Scenarios, each over two simulated years (2021-2022), one market per seed:

    null      40 noise features, 20 trades a day on 30 symbols: no feature has an IC
    break     `stable` (IC 0.1 throughout), `broken` (IC 0.1, then 0 from 2022-07-04) and 20 noise
              features, `--per-day` trades a day on 30 symbols (default 100 and 40)
    many      seven stable features and `broken` (all IC 0.1, more than top_k 5) and 4 noise
              features, 100 trades a day on 100 symbols

Run ends: after every week from week 26 on (the recent windows of consecutive runs share 7 of
their 8 weeks: overlapping) and every 8 weeks (non-overlapping windows). A nightly schedule sees the
same complete weeks on 7 nights running, so its verdicts are the weekly ones, each repeated.

Figures per scenario and cadence:
    runs                 run ends judged (all seeds)
    p<0.05 / p<0.01      share of (run, feature) rows whose one-sided p-value of a decline is
                         below 5% / 1%, over the features without a change (calibration)
    false alarm / run    share of runs whose check warns about a feature without a change
    false alarm / year   (weekly runs) share of simulated years (seed and calendar year) with at
                         least one such warning: what a desk running every night would see
    at week k            (break, many) share of seeds whose run k weeks after the break warns about
                         `broken`, k = 4, 6, 8, 10, 12 (not cumulative: once the break is older than
                         the 8 recent weeks, the weeks after it are in the "before")
    monitored at week 8  (break, many) share of seeds whose run 8 weeks after the break monitors it
    median first week    (break, many) median over seeds of the first week after the break with a warning
    ms / run             median time of alpha_monitor for one run end (beside feature_evidence's)

    python -m benchmarks.alpha_monitor [--seeds 20] [--per-day 100 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd

from persistence_pipeline.core.evidence import EvidenceParams, feature_evidence, period_ic
from persistence_pipeline.core.monitor import MonitorParams, alpha_monitor
from persistence_pipeline_tests.simulation import SimulatedMarket, simulated_trades

PARAMS = EvidenceParams(period_days=7)
MONITOR = MonitorParams()
FAR_FUTURE = pd.Timestamp("2100-01-01", tz="UTC")
BREAK = "2022-07-04"
FIRST_RUN_WEEK = 26
DETECTION_WEEKS = (4, 6, 8, 10, 12)


def null_market() -> SimulatedMarket:
    return SimulatedMarket(start="2021-01-01", end="2022-12-31", per_day=20, n_symbols=30, n_noise=40)


def break_market(per_day: int) -> SimulatedMarket:
    return SimulatedMarket(
        start="2021-01-01",
        end="2022-12-31",
        per_day=per_day,
        n_symbols=30,
        n_noise=20,
        planted={"stable": (0.1, 0.1)},
        breaks={"broken": (0.1, 0.0, BREAK)},
    )


def monitor_runs(
    market: SimulatedMarket, seed: int, ends: list[int], timings: dict[str, list[float]]
) -> pd.DataFrame:
    """The monitor's rows after a run ending with each of `ends` complete weeks (`end` column)."""
    full = period_ic(simulated_trades(market, seed), market.features, PARAMS, FAR_FUTURE)
    at_break = full.ic.index.get_loc(pd.Timestamp(BREAK, tz="UTC"))  # weeks complete before the break
    tables = []
    for end in ends:
        series = full.head(end)
        started = time.perf_counter()
        evidence = feature_evidence(series, PARAMS).set_index("feature")
        timings["evidence"].append(time.perf_counter() - started)
        started = time.perf_counter()
        table = alpha_monitor(series, evidence["ic_q_value"], MONITOR)
        timings["monitor"].append(time.perf_counter() - started)
        tables.append(table.assign(end=end, seed=seed, week=end - at_break))
    return pd.concat(tables, ignore_index=True)


def many_market() -> SimulatedMarket:
    return SimulatedMarket(
        start="2021-01-01",
        end="2022-12-31",
        per_day=100,
        n_symbols=100,
        n_noise=4,
        planted={f"stable_{i}": (0.1, 0.1) for i in range(7)},
        breaks={"broken": (0.1, 0.0, BREAK)},
    )


def n_weeks(market: SimulatedMarket) -> int:
    return len(pd.date_range(market.start, market.end, freq="W-MON"))


def figures(rows: pd.DataFrame, unchanged: pd.Series, weekly: bool) -> dict[str, str]:
    tested = rows[unchanged & rows["ic_change_p_value"].notna()]
    false_alarm = (rows["broken_down"] & unchanged).groupby([rows["seed"], rows["end"]]).any()
    year = (false_alarm.index.get_level_values("end") > 52).astype(int)  # weeks 26-52: year 1
    per_year = false_alarm.groupby([false_alarm.index.get_level_values("seed"), year]).any()
    return {
        "runs": str(rows.groupby(["seed", "end"]).ngroups),
        "p<0.05": f"{(tested['ic_change_p_value'] < 0.05).mean():.3f}",
        "p<0.01": f"{(tested['ic_change_p_value'] < 0.01).mean():.4f}",
        "false alarm / run": f"{false_alarm.mean():.4f}",
        "false alarm / year": f"{per_year.mean():.2f}" if weekly else "",
    }


def break_figures(rows: pd.DataFrame) -> dict[str, str]:
    broken_rows = rows[rows["feature"] == "broken"].set_index(["seed", "week"])
    broken = broken_rows["broken_down"]
    out = {}
    for week in DETECTION_WEEKS:
        at = broken.xs(week, level="week") if week in broken.index.get_level_values("week") else pd.Series()
        out[f"at week {week}"] = f"{at.mean():.2f}" if len(at) else "-"
    out["monitored at week 8"] = f"{broken_rows['monitored'].xs(8, level='week').mean():.2f}"
    after = broken[broken.index.get_level_values("week") > 0]
    first = after[after].reset_index().groupby("seed")["week"].min()
    out["median first week"] = f"{first.median():.0f}" if len(first) else "never"
    out["never"] = f"{after.groupby(level='seed').sum().eq(0).sum()} seeds"
    return out


def markdown(rows: list[dict[str, str]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row.get(c, "") for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--per-day", type=int, nargs="+", default=[100, 40])
    args = parser.parse_args()
    started = time.perf_counter()
    timings: dict[str, list[float]] = {"evidence": [], "monitor": []}
    table, detection = [], []
    scenarios = [
        ("null", null_market()),
        *((f"break, {n}/day", break_market(n)) for n in args.per_day),
        ("many strong, 100/day", many_market()),
    ]
    for name, market in scenarios:
        weeks = n_weeks(market)
        for cadence, step in [
            ("weekly (overlapping)", 1),
            ("every 8 weeks (non-overlapping)", MONITOR.recent_periods),
        ]:
            ends = list(range(FIRST_RUN_WEEK, weeks + 1, step))
            rows = pd.concat([monitor_runs(market, seed, ends, timings) for seed in range(args.seeds)])
            unchanged = rows["feature"] != "broken"
            table.append({"scenario": name, "cadence": cadence, **figures(rows, unchanged, step == 1)})
            if name != "null" and step == 1:
                detection.append({"scenario": name, **break_figures(rows)})
    print(
        f"{args.seeds} seeds; level {MONITOR.level}, {MONITOR.recent_periods} recent weeks, "
        f"top {MONITOR.top_k}\n"
    )
    print(markdown(table))
    print("\nDetection of the break (weekly runs; week = weeks after the break at the run end):\n")
    print(markdown(detection))
    ms = {key: 1000 * statistics.median(values) for key, values in timings.items()}
    print(
        f"\nmedian per run end: alpha_monitor {ms['monitor']:.1f} ms, "
        f"feature_evidence {ms['evidence']:.1f} ms "
        f"(ratio {ms['monitor'] / ms['evidence']:.2f}); total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
