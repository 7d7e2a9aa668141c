"""Asset checks: data quality of the stored trades and sanity of the stored model."""

import dagster as dg
import numpy as np

from persistence_pipeline.assets.profit_model import profit_model
from persistence_pipeline.assets.trades import trades
from persistence_pipeline.core.dataset import feature_columns
from persistence_pipeline.partitions import daily_partitions, run_range
from persistence_pipeline.resources import ModelSettings, Warehouse


@dg.asset_check(asset=trades, blocking=True, partitions_def=daily_partitions, description=(
    "The stored trades of the range are usable: at least one, prices positive, exit not before entry, "
    "side +1/-1, every feature finite. Blocks the model when it fails."
))
def trades_are_valid(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    window = run_range(context)
    stored = warehouse.trades_between(window.start, window.end)
    features = feature_columns(stored)
    values = stored[features].to_numpy(dtype="float64")
    problems = {
        "no trades in range": int(stored.empty),
        "non-positive price": int(((stored["entry_price"] <= 0) | (stored["exit_price"] <= 0)).sum()),
        "exit before entry": int((stored["exit_time"] < stored["entry_time"]).sum()),
        "side not +1/-1": int((~stored["side"].isin([1, -1])).sum()),
        "non-finite feature values": int((~np.isfinite(values)).sum()),
    }
    failed = {name: count for name, count in problems.items() if count}
    return dg.AssetCheckResult(
        passed=not failed,
        description="; ".join(f"{name}: {count}" for name, count in failed.items()) or f"{len(stored)} trades valid",
        metadata={"n_trades": len(stored), "n_features": len(features), **problems},
    )


@dg.asset_check(asset=profit_model, partitions_def=daily_partitions, description=(
    "The model has out-of-sample predictions and finite OOS metrics."
))
def profit_model_is_sane(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse, model_settings: ModelSettings
) -> dg.AssetCheckResult:
    run_key = run_range(context).run_key(model_settings.kind)
    row = warehouse.query("SELECT n_oos, oos_rank_ic, oos_r2 FROM run_metrics WHERE run_key = ?", [run_key])
    if row.empty:
        return dg.AssetCheckResult(passed=False, description=f"no run_metrics row for {run_key}")
    n_oos, ic, r2 = int(row["n_oos"].iloc[0]), float(row["oos_rank_ic"].iloc[0]), float(row["oos_r2"].iloc[0])
    passed = bool(n_oos > 0 and np.isfinite(ic) and np.isfinite(r2))
    return dg.AssetCheckResult(
        passed=passed,
        description=f"{n_oos} OOS trades, rank IC {ic:.4f}, R^2 {r2:.4f}",
        metadata={"n_oos": n_oos, "oos_rank_ic": float(ic) if np.isfinite(ic) else None},
    )
