"""Stage 1: trades of the run's date range, from the configured source into the `trades` table."""

import dagster as dg

from persistence_pipeline.assets.metadata import markdown_table, run_result, timed
from persistence_pipeline.assets.stage import (
    STAGE,
    discard_dead_staging,
    finish,
    run_database,
    user_errors_fail_the_step,
)
from persistence_pipeline.core.dataset import feature_columns, per_strategy_counts
from persistence_pipeline.core.trade_sources import check_trainable, trades_in_window
from persistence_pipeline.partitions import run_range, run_scope
from persistence_pipeline.resources import ModelSettings, TradeSource, Warehouse
from persistence_pipeline.storage.trade_store import replace_trades


@dg.asset(
    **STAGE,
    group_name="ingest",
    kinds={"duckdb"},
    description="Trades entered in the range, with their entry-time features and realized return. "
    "Refuses a range with too few trades to train on before storing anything; replaces the range's rows "
    "of the `trades` table in one transaction.",
)
@user_errors_fail_the_step
def trades(
    context: dg.AssetExecutionContext,
    trade_source: TradeSource,
    warehouse: Warehouse,
    model_settings: ModelSettings,
) -> dg.MaterializeResult:
    window = run_range(context)
    source = trade_source.describe()
    with timed(context.log, f"read and validated trades from {source}"):
        everything = trade_source.load()
    selected = trades_in_window(everything, window.start, window.end, source)
    check_trainable(selected, window.end, model_settings.min_train_trades, source)
    context.log.info(
        f"{len(selected)} of {len(everything)} trades of the source entered in "
        f"{window.first_day}..{window.last_day}"
    )
    with timed(context.log, f"replaced the range's rows of table trades with {len(selected)} trades"):
        db = run_database(context, warehouse)
        discard_dead_staging(context, db)
        replace_trades(db, selected, window.start, window.end, source, len(everything))
    run_key = run_scope(context, model_settings.kind).run_key
    finish(context, db, run_key)
    features = feature_columns(selected)
    context.log.info(
        f"stored {len(selected)} trades entered {window.first_day}..{window.last_day} "
        f"with {len(features)} features"
    )
    return run_result(
        context,
        run_key,
        {
            "source": source,
            "n_trades": len(selected),
            "n_symbols": int(selected["symbol"].nunique()),
            "n_features": len(features),
            "features": dg.MetadataValue.md(", ".join(f"`{f}`" for f in features)),
            "per_strategy": markdown_table(per_strategy_counts(selected, window.end)),
            "preview": markdown_table(
                selected[["trade_id", "entry_time", "exit_time", "side", "return"]], 10, "trades"
            ),
            "dagster/row_count": len(selected),
        },
    )
