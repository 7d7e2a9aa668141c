"""persistence-pipeline: which trade features carry persistent alpha, across retraining runs.

Dagster marks two features the project relies on as beta or preview: the single-run backfill
policy of the assets and partitioned asset checks. Their warnings would open every command's output;
they are silenced here, once, for the project's modules (docs/contributing.md).
"""

import warnings

from dagster import BetaWarning, PreviewWarning

warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
