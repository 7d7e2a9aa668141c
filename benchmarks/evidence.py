"""Evidence under every retraining cadence: false positives without signal, and power on planted
effects, measured THROUGH the pipeline (the trade-log source and the CLI), not by calling core/.

Simulated trade logs (tests' simulation.py, fixed seeds) are written as Parquet into a trade-log
directory (PERSISTENCE_TRADE_SOURCE=trade_log_dir, docs/how-to/bring-your-own.md); two scenarios:

    null      no planted effect: 40 noise features, 50 trades a day on 50 symbols (seed 11)
    planted   persistent_a IC 0.08, persistent_b IC 0.06 (constant), fading IC 0.2 -> 0 linearly
              over the span, plus 20 noise features; 100 trades a day on 100 symbols (seed 0)

Four schedules of 90-day retraining windows over the span (default one simulated year,
2021-01-01..2021-12-31): stepping 1 day (nightly), 7 days, 30 days and 90 days (non-overlapping).
Each scenario x schedule gets a FRESH warehouse and DAGSTER_HOME (under /dev/shm when there is one:
Dagster's SQLite event log syncs every event) and one CLI run per window, in time order:

    dagster asset materialize -m persistence_pipeline.definitions \\
      --select trades,profit_model,feature_importance,feature_stability,stability_summary,feature_alpha \\
      --partition-range A...B

(priors and dashboard are not selected: they do not feed feature_alpha). A CLI run costs about 15 s
here, most of it fixed (imports, the code location, the instance), so the nightly schedule is
limited to its LAST `--nights` nights (default 10): one catch-up run over the span before their
windows first stores the earlier trades, as a deployment that goes nightly after a backfill would
have them, and its rows are not counted. The default configuration is 130 CLI runs (34 min on this
2-core machine while tests ran beside it).

Per schedule, from `feature_alpha` and `stability_summary` read back from the warehouse, over every
(as-of run, feature) row of the counted runs: for `null` the share of noise rows with q < 0.05, with
p < 0.05 (calibration of the per-feature test), flagged `decaying`, and the 95th percentile and max
of alpha_score; for `planted` the share of runs whose top two alpha scores are the persistent
features, the first run (last day of its window) at which `fading` is flagged decaying and the
share of its planted IC left then ("<=" when that is the first counted night of the cut nightly
schedule: it may have been flagged earlier), the share of persistent rows flagged decaying and of noise rows
with q < 0.05. Beside them the mean trade overlap of consecutive runs and the last run's
n_independent_runs / n_runs (stability_summary; the nightly figures include the catch-up run), and
the median seconds per CLI run. Shares are over the rows where the figure is not null. The row "all
schedules" pools the rows of every schedule (its "last run" is the latest run end of any).

    python -m benchmarks.evidence [--quick] [--start 2021-01-01] [--end 2021-12-31] [--nights 10]
        [--scenarios null planted] [--steps 1 7 30 90]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from persistence_pipeline_tests.simulation import SimulatedMarket, planted_ic, simulated_trades, trade_log

REPO = Path(__file__).resolve().parents[1]
WINDOW_DAYS = 90
STEPS = {1: "nightly", 7: "weekly", 30: "monthly", WINDOW_DAYS: "non-overlapping"}
SELECTION = "trades,profit_model,feature_importance,feature_stability,stability_summary,feature_alpha"
PERSISTENT = ("persistent_a", "persistent_b")
FADING_START = 0.2
SEEDS = {"null": 11, "planted": 0}
AGREEMENT = ["ic_p_value", "ic_q_value", "alpha_score", "persistence"]
QUICK = {"end": "2021-04-30", "nights": 2}


def market(scenario: str, start: str, end: str) -> SimulatedMarket:
    if scenario == "null":
        return SimulatedMarket(start=start, end=end, per_day=50, n_symbols=50, n_noise=40)
    return SimulatedMarket(
        start=start,
        end=end,
        per_day=100,
        n_symbols=100,
        n_noise=20,
        planted={
            "persistent_a": (0.08, 0.08),
            "persistent_b": (0.06, 0.06),
            "fading": (FADING_START, 0.0),
        },
    )


@dataclass(frozen=True)
class Window:
    first: pd.Timestamp
    last: pd.Timestamp  # included

    @property
    def keys(self) -> tuple[str, str]:
        return f"{self.first:%Y-%m-%d}", f"{self.last:%Y-%m-%d}"

    @property
    def run_key(self) -> str:
        return f"{self.first.date()}..{self.last.date()}/ridge"


def schedule(start: str, end: str, step: int, nights: int) -> tuple[Window | None, list[Window]]:
    """The 90-day windows stepping `step` days whose last day is within [start, end], and, when the
    nightly schedule is cut to its last `nights`, the catch-up window before the kept ones."""
    first, final = pd.Timestamp(start), pd.Timestamp(end)
    span = pd.Timedelta(days=WINDOW_DAYS - 1)
    lasts = pd.date_range(first + span, final, freq=f"{step}D")
    windows = [Window(last - span, last) for last in lasts]
    if step == 1 and len(windows) > nights:
        windows = windows[-nights:]
        return Window(first, windows[0].first - pd.Timedelta(days=1)), windows
    return None, windows


def environment(folder: Path, trade_dir: Path, start: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTENCE_")}
    home = folder / "dagster_home"
    home.mkdir(parents=True)
    return {
        **env,
        "DAGSTER_HOME": str(home),
        "PERSISTENCE_WAREHOUSE": str(folder / "warehouse.duckdb"),
        "PERSISTENCE_CHECKPOINTS": str(folder / "checkpoints"),
        "PERSISTENCE_DASHBOARDS": str(folder / "dashboard"),
        "PERSISTENCE_TRADE_SOURCE": "trade_log_dir",
        "PERSISTENCE_TRADE_PATH": str(trade_dir),
        "PERSISTENCE_PARTITIONS_START": start,
        "PERSISTENCE_MODEL_KIND": "ridge",
        "PERSISTENCE_RETRAIN_WINDOW_DAYS": str(WINDOW_DAYS),
    }


def materialize(window: Window, env: dict[str, str]) -> float:
    """One CLI run over the window; its wall seconds. A failed run stops the benchmark."""
    a, b = window.keys
    command = [
        str(Path(sys.executable).parent / "dagster"),
        *("asset", "materialize", "-m", "persistence_pipeline.definitions"),
        *("--select", SELECTION, "--partition-range", f"{a}...{b}"),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-60:])
        raise SystemExit(f"CLI run {a}...{b} failed (exit {done.returncode}):\n{' '.join(command)}\n{tail}")
    return seconds


def read_back(warehouse: Path, counted: list[Window]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """feature_alpha and stability_summary rows of the counted runs, with each run's last day."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        alpha = con.execute(
            "SELECT as_of_run_key, feature, ic_p_value, ic_q_value, decaying, alpha_score, persistence,"
            " n_periods, half_life_days FROM feature_alpha"
        ).df()
        summary = con.execute(
            "SELECT as_of_run_key, n_runs, n_independent_runs, mean_trade_overlap FROM stability_summary"
        ).df()
    last_day = {w.run_key: w.last for w in counted}
    stored = set(alpha["as_of_run_key"])
    missing = sorted(set(last_day) - stored)
    if missing:
        raise SystemExit(f"feature_alpha has no rows for runs {missing[:5]} (of {len(missing)})")
    alpha = alpha[alpha["as_of_run_key"].isin(last_day)].copy()
    summary = summary[summary["as_of_run_key"].isin(last_day)].copy()
    alpha["last_day"] = alpha["as_of_run_key"].map(last_day)
    summary["last_day"] = summary["as_of_run_key"].map(last_day)
    return alpha.sort_values(["last_day", "feature"]), summary.sort_values("last_day")


def share(values: pd.Series) -> tuple[float, int]:
    """Mean of a boolean series over its non-null values, and their count."""
    values = values.dropna().astype(bool)
    return (float(values.mean()) if len(values) else float("nan")), len(values)


def pct(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.1%}"


def overlap_figures(summary: pd.DataFrame) -> dict[str, str]:
    overlap = summary["mean_trade_overlap"].dropna()
    last = summary.iloc[-1]
    return {
        "mean trade overlap": "-" if overlap.empty else f"{overlap.mean():.2f}",
        "last run: independent / runs": f"{int(last['n_independent_runs'])} / {int(last['n_runs'])}",
    }


def null_figures(alpha: pd.DataFrame) -> dict[str, str]:
    noise = alpha[alpha["feature"].str.startswith("noise_")]
    q, n = share(noise["ic_q_value"].where(noise["ic_q_value"].isna(), noise["ic_q_value"] < 0.05))
    p, _ = share(noise["ic_p_value"].where(noise["ic_p_value"].isna(), noise["ic_p_value"] < 0.05))
    decaying, _ = share(noise["decaying"])
    score = noise["alpha_score"].dropna()
    return {
        "runs": str(alpha["run"].nunique()),
        "noise rows tested": str(n),
        "q < 0.05": pct(q),
        "p < 0.05": pct(p),
        "decaying": pct(decaying),
        "alpha p95": f"{score.quantile(0.95):.3f}" if len(score) else "-",
        "alpha max": f"{score.max():.3f}" if len(score) else "-",
    }


def planted_figures(alpha: pd.DataFrame, sim: SimulatedMarket, cut: bool = False) -> dict[str, str]:
    """`cut`: the schedule's earlier runs were not run, so a flag at its first counted run may be
    older (shown as "<= date")."""
    scored = alpha.dropna(subset=["alpha_score"])
    top_two = [
        set(rows.nlargest(2, "alpha_score")["feature"]) == set(PERSISTENT)
        for _, rows in scored.sort_values("last_day", kind="stable").groupby("run", sort=False)
        if len(rows) >= 2
    ]
    fading = alpha[alpha["feature"] == "fading"].sort_values("last_day")
    flagged = fading[fading["decaying"].fillna(False).astype(bool)]
    if flagged.empty:
        first_flag, left, held = "never", "-", "-"
    else:
        when = flagged["last_day"].iloc[0]
        first_flag = f"{when:%Y-%m-%d}"
        if cut and when == fading["last_day"].iloc[0]:
            first_flag = f"<= {first_flag}"
        left = pct(planted_ic(sim, "fading", pd.Timestamp(when, tz="UTC")) / FADING_START)
        held = pct(float(fading.loc[fading["last_day"] >= when, "decaying"].fillna(False).mean()))
    persistent = alpha[alpha["feature"].isin(PERSISTENT)]
    noise = alpha[alpha["feature"].str.startswith("noise_")]
    decaying, _ = share(persistent["decaying"])
    q, _ = share(noise["ic_q_value"].where(noise["ic_q_value"].isna(), noise["ic_q_value"] < 0.05))
    top_share = float(np.mean(top_two)) if top_two else float("nan")
    return {
        "runs": str(alpha["run"].nunique()),
        "top 2 = persistent": f"{pct(top_share)} of {len(top_two)}",
        "... in last run": ("yes" if top_two[-1] else "no") if top_two else "-",
        "fading first flagged": first_flag,
        "fading IC left then": left,
        "fading flagged from then": held,
        "persistent rows decaying": pct(decaying),
        "noise q < 0.05": pct(q),
    }


@dataclass
class Outcome:
    alpha: pd.DataFrame
    summary: pd.DataFrame
    seconds: list[float]
    wall: float
    catch_up: Window | None


def run_schedule(scenario: str, step: int, args: argparse.Namespace, trade_dir: Path, root: Path) -> Outcome:
    catch_up, windows = schedule(args.start, args.end, step, args.nights)
    folder = root / f"{scenario}_{STEPS.get(step, f'step{step}')}"
    env = environment(folder, trade_dir, args.start)
    runs = ([catch_up] if catch_up else []) + windows
    seconds, started = [], time.perf_counter()
    for i, window in enumerate(runs, 1):
        took = materialize(window, env)
        seconds.append(took)
        a, b = window.keys
        note = " (catch-up, not counted)" if window is catch_up else ""
        print(f"  [{scenario} step {step}] {i}/{len(runs)} {a}...{b}: {took:.1f} s{note}", file=sys.stderr)
    alpha, summary = read_back(folder / "warehouse.duckdb", windows)
    alpha["run"] = f"{step}:" + alpha["as_of_run_key"]  # a run of this schedule, when schedules are pooled
    alpha["step"] = step
    return Outcome(alpha, summary, seconds, time.perf_counter() - started, catch_up)


def agreement(pooled: pd.DataFrame) -> str:
    """How far the figures of runs ending on the same day differ between schedules."""
    keys = ["last_day", "feature"]
    shared = pooled[pooled.groupby(keys)["step"].transform("nunique") > 1]
    if shared.empty:
        return "No run end is shared by two schedules."
    groups = shared.groupby(keys)
    spread = {c: float((groups[c].max() - groups[c].min()).max()) for c in AGREEMENT}
    decaying = int((groups["decaying"].nunique(dropna=False) > 1).sum())
    figures = ", ".join(f"{c} {v:.1e}" for c, v in spread.items())
    days = ", ".join(f"{d:%Y-%m-%d}" for d in sorted(shared["last_day"].unique()))
    return (
        f"Same run end, different schedules ({days}: {groups.ngroups} feature rows): largest difference "
        f"{figures}; `decaying` differs in {decaying} rows."
    )


def markdown(rows: list[dict[str, str]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|"]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"a short check: {QUICK}")
    parser.add_argument("--start", default="2021-01-01")
    parser.add_argument("--end", default="2021-12-31")
    parser.add_argument("--nights", type=int, default=10, help="nightly windows run (the last ones)")
    parser.add_argument("--scenarios", nargs="+", default=["null", "planted"], choices=["null", "planted"])
    parser.add_argument("--steps", nargs="+", type=int, default=list(STEPS))
    args = parser.parse_args()
    if args.quick:
        args.end, args.nights = QUICK["end"], QUICK["nights"]
    shm = Path("/dev/shm")
    total_started, total_runs = time.perf_counter(), 0
    print(
        f"# Evidence through the CLI: {WINDOW_DAYS}-day windows over {args.start}..{args.end}, a fresh "
        f"warehouse per scenario and schedule\n"
    )
    with tempfile.TemporaryDirectory(prefix="evidence-bench-", dir=shm if shm.is_dir() else None) as tmp:
        root = Path(tmp)
        for scenario in args.scenarios:
            sim = market(scenario, args.start, args.end)
            trade_dir = root / f"{scenario}_trades"
            trade_dir.mkdir()
            trades = simulated_trades(sim, SEEDS[scenario])
            trade_log(trades).to_parquet(trade_dir / "trades.parquet", index=False)
            rows, pooled, notes = [], [], []
            scenario_started = time.perf_counter()
            for step in args.steps:
                outcome = run_schedule(scenario, step, args, trade_dir, root)
                total_runs += len(outcome.seconds)
                pooled.append(outcome.alpha)
                figures = (
                    null_figures(outcome.alpha)
                    if scenario == "null"
                    else planted_figures(outcome.alpha, sim, cut=outcome.catch_up is not None)
                )
                rows.append(
                    {
                        "schedule": f"{STEPS.get(step, 'step')} ({step} d)",
                        **figures,
                        **overlap_figures(outcome.summary),
                        "median s / run": f"{statistics.median(outcome.seconds):.1f}",
                        "wall s": f"{outcome.wall:.0f}",
                    }
                )
                if outcome.catch_up is not None:
                    a, b = outcome.catch_up.keys
                    notes.append(
                        f"{STEPS.get(step, step)}: only the last {args.nights} nights are run, after one "
                        f"catch-up run {a}...{b} that stores the earlier trades (its rows are not counted)"
                    )
            everything = pd.concat(pooled)
            pooled_figures = (
                null_figures(everything) if scenario == "null" else planted_figures(everything, sim)
            )
            total = {"schedule": "**all schedules**", **pooled_figures}
            total |= {c: "" for c in rows[0] if c not in total}
            total["wall s"] = f"{time.perf_counter() - scenario_started:.0f}"
            features = ", ".join(f"{k} {v[0]}->{v[1]}" for k, v in sim.planted.items()) or "none planted"
            print(
                f"## {scenario}: {len(trades)} trades ({sim.per_day} a day on {sim.n_symbols} symbols), "
                f"{sim.n_noise} noise features; {features}; seed {SEEDS[scenario]}\n"
            )
            print(markdown([*rows, total]))
            for note in notes:
                print(f"\n{note}.")
            print(f"\n{agreement(everything)}")
            print()
    print(f"Total: {total_runs} CLI runs in {time.perf_counter() - total_started:.0f} s.")


if __name__ == "__main__":
    main()
