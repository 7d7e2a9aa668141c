"""Stage 1: trades of the run's date range, from the configured source into the `trades` table."""

import dagster as dg

from persistence_pipeline.assets.metadata import markdown_table, timed
from persistence_pipeline.core.dataset import feature_columns
from persistence_pipeline.core.trade_sources import check_trainable, trades_in_window
from persistence_pipeline.partitions import daily_partitions, run_range, single_run_backfill
from persistence_pipeline.resources import WAREHOUSE_POOL, ModelSettings, TradeSource, Warehouse


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    pool=WAREHOUSE_POOL,
    group_name="ingest",
    kinds={"duckdb"},
    description="Trades entered in the range, with their entry-time features and realized return. "
    "Refuses a range with too few trades to train on before storing anything; replaces the range's rows "
    "of the `trades` table in one transaction.",
)
def trades(
    context: dg.AssetExecutionContext,
    trade_source: TradeSource,
    warehouse: Warehouse,
    model_settings: ModelSettings,
) -> dg.MaterializeResult:
    window = run_range(context)
    with timed(context.log, f"read and validated trades from {trade_source.describe()}"):
        everything = trade_source.load()
    selected = trades_in_window(everything, window.start, window.end, trade_source.describe())
    check_trainable(selected, window.end, model_settings.min_train_trades, trade_source.describe())
    context.log.info(
        f"{len(selected)} of {len(everything)} trades of the source entered in {window.first_day}..{window.last_day}"
    )
    with timed(context.log, f"replaced the range's rows of table trades with {len(selected)} trades"):
        warehouse.replace_trades(selected, window.start, window.end, trade_source.describe(), len(everything))
    features = feature_columns(selected)
    context.log.info(
        f"stored {len(selected)} trades entered {window.first_day}..{window.last_day} with {len(features)} features"
    )
    realized = selected["exit_time"] < window.end
    per_strategy = (
        selected.assign(realized=realized)
        .groupby("strategy")
        .agg(
            trades=("trade_id", "size"),
            exited_by_range_end=("realized", "sum"),
            mean_return_exited=("return", lambda r: r[realized.loc[r.index]].mean()),
        )
        .reset_index()
    )
    return dg.MaterializeResult(
        metadata={
            "source": trade_source.describe(),
            "n_trades": len(selected),
            "n_symbols": int(selected["symbol"].nunique()),
            "n_features": len(features),
            "features": dg.MetadataValue.md(", ".join(f"`{f}`" for f in features)),
            "per_strategy": markdown_table(per_strategy),
            "preview": markdown_table(
                selected[["trade_id", "entry_time", "exit_time", "side", "return"]], 10, "trades"
            ),
            "dagster/row_count": len(selected),
        }
    )
