"""persistence-pipeline: which trade features carry persistent alpha, across retraining runs."""
