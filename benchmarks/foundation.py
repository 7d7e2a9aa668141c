"""Figures for the foundation, all measured in one run of this script:

1. wall time of the headline CLI range run on the embedded data, next to a trivial Dagster run
   with the same number of assets and checks, and their ratio; and the same CLI run with the trees
   beside the ridge (model_settings.ensemble = ["gbt"]), the cost of the ensemble (medians of
   --repeats runs);
2. per-stage compute time and peak memory at 10k, 100k and 1M synthetic trades with 18 features:
   validation of a trade log, warehouse write, model (walk-forward + final fit), importance.

Peak memory is tracemalloc's peak of the stage (numpy and pandas buffers included; DuckDB's own
memory is not), measured in a second pass so that tracing does not slow the timed pass.

    python -m benchmarks.foundation [--repeats 3] [--sizes 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from persistence_pipeline.core.dataset import training_set
from persistence_pipeline.core.design import DesignParams
from persistence_pipeline.core.importance import ImportanceParams, importance_table
from persistence_pipeline.core.model import ModelParams, train_and_evaluate
from persistence_pipeline.core.schema import Frame, validate_trade_log
from persistence_pipeline.resources import Warehouse
from persistence_pipeline.storage.trade_store import replace_trades

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")
RANGE = "2021-01-04...2021-06-30"
ENSEMBLE_CONFIG = '{"resources": {"model_settings": {"config": {"ensemble": ["gbt"]}}}}'


def cli_seconds(target: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "PERSISTENCE_WAREHOUSE": f"{tmp}/w.duckdb",
            "PERSISTENCE_CHECKPOINTS": f"{tmp}/checkpoints",
        }
        start = time.perf_counter()
        subprocess.run(
            [DAGSTER, "asset", "materialize", *target, "--select", "*", "--partition-range", RANGE],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - start


def synthetic_trade_log(n: int, n_features: int = 18, seed: int = 0) -> pd.DataFrame:
    """n trades over ~8 years with 3 informative features; as a user's trade log would look."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    entry = pd.Timestamp("2015-01-01", tz="UTC") + pd.to_timedelta(
        np.sort(rng.integers(0, 3000 * 86400, n)), unit="s"
    )
    exit_time = entry + pd.to_timedelta(rng.integers(3600, 10 * 86400, n), unit="s")
    side = rng.choice([-1, 1], n)
    ret = X[:, :3] @ np.array([0.02, -0.01, 0.005]) + rng.normal(scale=0.05, size=n)
    entry_price = rng.uniform(10, 500, n)
    log = pd.DataFrame(
        {
            "trade_id": [f"t{i}" for i in range(n)],
            "symbol": rng.choice(["A", "B", "C"], n),
            "entry_time": entry,
            "exit_time": exit_time,
            "entry_price": entry_price,
            "exit_price": entry_price * (1 + side * ret),
            "side": side,
        }
    )
    for j in range(n_features):
        log[f"feature_{j:02d}"] = X[:, j]
    return log


def stages(n: int, workdir: Path) -> dict[str, Callable[[], None]]:
    log = synthetic_trade_log(n)
    state: dict = {}
    database = Warehouse(path=str(workdir / f"bench_{n}.duckdb")).database()
    start, end = pd.Timestamp("2015-01-01", tz="UTC"), pd.Timestamp("2024-01-01", tz="UTC")

    def validate():
        trades = validate_trade_log(Frame("synthetic", log), None)
        trades["return"] = trades["side"] * (trades["exit_price"] / trades["entry_price"] - 1)
        state["trades"] = trades

    def store():
        replace_trades(database, state["trades"], start, end, "synthetic", len(state["trades"]))

    def model():
        data = training_set(state["trades"], end, DesignParams())
        state["data"] = data
        state["fitted"] = train_and_evaluate(
            data.X, data.y, data.entry, data.exit, data.features, ModelParams()
        )

    def importance():
        data, fitted = state["data"], state["fitted"]
        importance_table(
            fitted.model, fitted.fold_models, fitted.folds, data.X, data.y, data.features, ImportanceParams()
        )

    return {"validate": validate, "store": store, "model": model, "importance": importance}


def measure_stages(n: int, workdir: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    timed = stages(n, workdir)
    seconds = {}
    for name, run in timed.items():
        t = time.perf_counter()
        run()
        seconds[name] = time.perf_counter() - t
    traced = stages(n, workdir)
    matrix_mib = n * 18 * 8 / 2**20
    for name, run in traced.items():
        tracemalloc.start()
        run()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak_mib = peak / 2**20
        rows.append(
            {
                "trades": n,
                "stage": name,
                "seconds": seconds[name],
                "peak_MiB": peak_mib,
                "peak_x_feature_matrix": peak_mib / matrix_mib,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()

    real = [cli_seconds(["-m", "persistence_pipeline.definitions"]) for _ in range(args.repeats)]
    ensemble = [
        cli_seconds(["-m", "persistence_pipeline.definitions", "--config-json", ENSEMBLE_CONFIG])
        for _ in range(args.repeats)
    ]
    trivial = [
        cli_seconds(["-f", str(REPO / "benchmarks" / "trivial_definitions.py")]) for _ in range(args.repeats)
    ]
    print(f"## CLI range run {RANGE} (median of {args.repeats})\n")
    print("| run | median s | all runs s |\n|---|---:|---|")
    for label, seconds in [
        ("persistence_pipeline, embedded data", real),
        ("trivial, same number of assets and checks", trivial),
    ]:
        print(f"| {label} | {statistics.median(seconds):.2f} | {', '.join(f'{s:.2f}' for s in seconds)} |")
    print(f"| ratio | {statistics.median(real) / statistics.median(trivial):.2f} | |")
    print(
        f"| persistence_pipeline, ensemble ridge+gbt | {statistics.median(ensemble):.2f} | "
        f"{', '.join(f'{s:.2f}' for s in ensemble)} |"
    )
    print(
        f"| ratio ensemble / ridge alone | {statistics.median(ensemble) / statistics.median(real):.2f} | |\n"
    )

    print("## Per-stage compute at scale (18 features)\n")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for n in args.sizes for row in measure_stages(n, Path(tmp))]
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".2f"))
    by_size = table.pivot(index="trades", columns="stage", values="seconds")
    print("\n| trades | model + importance s | per 1k trades ms |\n|---:|---:|---:|")
    for n, row in by_size.iterrows():
        total = row["model"] + row["importance"]
        print(f"| {n:,} | {total:.2f} | {1000 * total / n * 1000:.3f} |")


if __name__ == "__main__":
    main()
