"""The `history` code location: the stages of definitions.py on MONTHLY partitions, for ranges of
years as one run.

Dagster's bookkeeping of a range run grows with its partitions (a materialization, a planned event
and a check evaluation per asset and partition), and on daily partitions it dwarfs the project's own
work for long ranges: ten years are 3,650 partitions and 15 minutes (docs/benchmarks.md, "Long
ranges"). Here the
same assets, checks and resources run on months, 120 partitions for ten years. They are the same
code on the same warehouse: a run of the months 2021-01...2021-06 (keys 2021-01-01...2021-06-01)
is the run `2021-01-01..2021-06-30/<kind>` that a daily run of those days is, and writes the same
rows. The keys carry the prefix `history/` (`history/trades`, ...), so that both code locations load
side by side in one workspace. The nightly schedule stays in the daily code location, whose
partitions follow a run day by day; the stale runs of whole months longer than a year are recomputed
here (sensors.py)."""

import dagster as dg

from persistence_pipeline import checks, sensors
from persistence_pipeline.definitions import ASSETS, RESOURCES
from persistence_pipeline.partitions import monthly_partitions

KEY_PREFIX = "history"
GROUP = "history"

HISTORY_KEYS = {key: key.with_prefix(KEY_PREFIX) for asset in ASSETS for key in asset.keys}


def monthly(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The stage asset under `history/`, on the monthly partitions (its deps follow it)."""
    renamed = asset.with_attributes(asset_key_replacements=HISTORY_KEYS)
    return renamed.map_asset_specs(
        lambda spec: spec.replace_attributes(group_name=GROUP, partitions_def=monthly_partitions)
    )


HISTORY_ASSETS = [monthly(asset) for asset in ASSETS]
HISTORY_CHECKS = [check.build(monthly_partitions, [KEY_PREFIX]) for check in checks.STAGE_CHECKS]

defs = dg.Definitions(
    assets=HISTORY_ASSETS,
    asset_checks=HISTORY_CHECKS,
    sensors=[sensors.stale_history_runs_sensor],
    resources=RESOURCES,
    executor=dg.in_process_executor,
)
