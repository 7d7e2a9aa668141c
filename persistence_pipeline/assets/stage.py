"""What every stage asset shares: the one partitions definition, the single-run backfill policy (a
date range is one run) and the warehouse concurrency pool. Every asset decorator spreads `STAGE`."""

from typing import Any

from persistence_pipeline.partitions import daily_partitions, single_run_backfill
from persistence_pipeline.resources import WAREHOUSE_POOL

STAGE: dict[str, Any] = {
    "partitions_def": daily_partitions,
    "backfill_policy": single_run_backfill,
    "pool": WAREHOUSE_POOL,
}
