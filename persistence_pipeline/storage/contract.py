"""The public data contract (docs/reference/data-contract.md): every table's columns and key, the
schema migration, and the one helper through which a name that comes from data (a feature column)
enters SQL text."""

from __future__ import annotations

import duckdb

from persistence_pipeline.errors import InputDataError


def _columns(spec: str) -> list[tuple[str, str]]:
    pairs = [part.strip().split(" ", 1) for part in spec.split(",")]
    return [(name, kind) for name, kind in pairs]


# table -> (columns, primary key). Columns are only ever added: a warehouse written by an older
# version gets the new columns (NULL) when it is next opened for writing.
FIXED_TABLES: dict[str, tuple[list[tuple[str, str]], tuple[str, ...]]] = {
    "trades": (
        _columns(
            "trade_id VARCHAR, symbol VARCHAR, strategy VARCHAR, entry_time TIMESTAMPTZ, "
            "exit_time TIMESTAMPTZ, entry_price DOUBLE, exit_price DOUBLE, side TINYINT, return DOUBLE"
        ),
        ("trade_id",),
    ),
    "run_metrics": (
        _columns(
            "run_key VARCHAR, range_start DATE, range_end DATE, dagster_run_id VARCHAR, model_kind VARCHAR, "
            "n_trades INTEGER, n_train INTEGER, n_unrealized INTEGER, n_features INTEGER, n_folds INTEGER, "
            "n_oos INTEGER, oos_rank_ic DOUBLE, oos_r2 DOUBLE, oos_hit_rate DOUBLE, oos_base_rate DOUBLE, "
            "oos_n_taken INTEGER, oos_mean_return_taken DOUBLE, oos_mean_return_all DOUBLE, "
            "priors_from_run_key VARCHAR, curriculum_from_run_key VARCHAR, alpha_used DOUBLE, seed INTEGER, "
            "model_params VARCHAR, library_versions VARCHAR, explainer VARCHAR, shap_sample_size INTEGER, "
            "created_at TIMESTAMPTZ, n_censored INTEGER, prior_weight DOUBLE, inputs_digest VARCHAR, "
            "cost_bps DOUBLE, ensemble_models VARCHAR"
        ),
        ("run_key",),
    ),
    # the runs a run read, recorded when it was published (storage/runs.py: `stale_runs`)
    "run_inputs": (
        _columns("run_key VARCHAR, input_run_key VARCHAR, input_version VARCHAR"),
        ("run_key", "input_run_key"),
    ),
    "oos_predictions": (
        _columns(
            "run_key VARCHAR, trade_id VARCHAR, fold INTEGER, prediction DOUBLE, realized DOUBLE, "
            "position DOUBLE, predicted_sd DOUBLE"
        ),
        ("run_key", "trade_id"),
    ),
    # the OOS books of a run, gross and net of costs (core/sizing.py)
    "sizing_performance": (
        _columns(
            "run_key VARCHAR, book VARCHAR, costs VARCHAR, n_trades INTEGER, exposure DOUBLE, "
            "total_return DOUBLE, mean_return DOUBLE, hit_rate DOUBLE, sharpe DOUBLE, max_drawdown DOUBLE, "
            "turnover DOUBLE, cost_bps DOUBLE"
        ),
        ("run_key", "book", "costs"),
    ),
    # every member's and the ensemble's walk-forward OOS predictions and metrics (core/ensemble.py);
    # no rows for a run of one model
    "ensemble_predictions": (
        _columns(
            "run_key VARCHAR, model_kind VARCHAR, trade_id VARCHAR, fold INTEGER, prediction DOUBLE, "
            "scale DOUBLE"
        ),
        ("run_key", "model_kind", "trade_id"),
    ),
    "ensemble_metrics": (
        _columns(
            "run_key VARCHAR, model_kind VARCHAR, weight DOUBLE, n_oos INTEGER, oos_rank_ic DOUBLE, "
            "oos_r2 DOUBLE, oos_hit_rate DOUBLE, oos_base_rate DOUBLE, oos_n_taken INTEGER, "
            "oos_mean_return_taken DOUBLE, oos_mean_return_all DOUBLE"
        ),
        ("run_key", "model_kind"),
    ),
    "trade_loads": (
        _columns(
            "range_start DATE, range_end DATE, source VARCHAR, n_source INTEGER, n_in_range INTEGER, "
            "loaded_at TIMESTAMPTZ, trades_sha256 VARCHAR"
        ),
        ("range_start", "range_end"),
    ),
    "data_loss": (_columns("run_key VARCHAR, reason VARCHAR, n_trades INTEGER"), ("run_key", "reason")),
    "feature_coverage": (
        _columns(
            "run_key VARCHAR, feature VARCHAR, n_values INTEGER, coverage DOUBLE, used BOOLEAN, "
            "duplicate_of VARCHAR"
        ),
        ("run_key", "feature"),
    ),
    "excluded_features": (
        _columns(
            "run_key VARCHAR, feature VARCHAR, ic DOUBLE, reason VARCHAR, n_folds_screened INTEGER, "
            "ic_se DOUBLE, ic_bound DOUBLE, ceiling DOUBLE, n_trades INTEGER, n_days INTEGER, "
            "screen_group VARCHAR, n_screens_flagged INTEGER, flagged_on VARCHAR"
        ),
        ("run_key", "feature"),
    ),
    "checkpoints": (
        _columns(
            "run_key VARCHAR, model_kind VARCHAR, range_start DATE, range_end DATE, path VARCHAR, "
            "sha256 VARCHAR, oos_rank_ic DOUBLE, oos_r2 DOUBLE, oos_hit_rate DOUBLE, created_at TIMESTAMPTZ"
        ),
        ("run_key",),
    ),
    "feature_importance_history": (
        _columns(
            "run_key VARCHAR, feature VARCHAR, range_end DATE, coef DOUBLE, shap_mean_abs DOUBLE, "
            "perm_importance DOUBLE, perm_importance_std DOUBLE, ic DOUBLE, rank INTEGER, coef_std DOUBLE, "
            "shap_mean_abs_std DOUBLE, group_id INTEGER, group_size INTEGER, group_shap_mean_abs DOUBLE, "
            "max_abs_corr DOUBLE, own_coef_raw DOUBLE, own_coef_raw_std DOUBLE, quarantined BOOLEAN, "
            "suspect BOOLEAN, suspect_reason VARCHAR"
        ),
        ("run_key", "feature"),
    ),
    # each ensemble member's importance, and how far the members' ranks agree (core/ensemble.py)
    "ensemble_importance": (
        _columns(
            "run_key VARCHAR, model_kind VARCHAR, feature VARCHAR, rank INTEGER, shap_mean_abs DOUBLE, "
            "perm_importance DOUBLE, perm_importance_std DOUBLE"
        ),
        ("run_key", "model_kind", "feature"),
    ),
    "model_agreement": (
        _columns(
            "run_key VARCHAR, feature VARCHAR, n_models INTEGER, rank_min DOUBLE, rank_max DOUBLE, "
            "rank_gap DOUBLE, in_all_top_k BOOLEAN, in_any_top_k BOOLEAN, k INTEGER, rank_spearman DOUBLE"
        ),
        ("run_key", "feature"),
    ),
    "feature_segments": (
        _columns(
            "run_key VARCHAR, segment VARCHAR, feature VARCHAR, n_trades INTEGER, ic DOUBLE, "
            "shap_mean_abs DOUBLE, rank INTEGER"
        ),
        ("run_key", "segment", "feature"),
    ),
    "feature_interactions": (
        _columns(
            "run_key VARCHAR, feature_a VARCHAR, feature_b VARCHAR, interaction_mean_abs DOUBLE, rank INTEGER"
        ),
        ("run_key", "feature_a", "feature_b"),
    ),
    "importance_changes": (
        _columns(
            "run_key VARCHAR, previous_run_key VARCHAR, feature VARCHAR, previous_rank INTEGER, "
            "rank INTEGER, "
            "rank_shift INTEGER, previous_shap_mean_abs DOUBLE, shap_mean_abs DOUBLE, shap_change DOUBLE, "
            "entered_top_k BOOLEAN, left_top_k BOOLEAN"
        ),
        ("run_key", "feature"),
    ),
    "feature_stability": (
        _columns(
            "as_of_run_key VARCHAR, feature VARCHAR, n_runs INTEGER, rank_mean DOUBLE, rank_std DOUBLE, "
            "topk_frequency DOUBLE, sign_consistency DOUBLE, importance_cv DOUBLE"
        ),
        ("as_of_run_key", "feature"),
    ),
    "stability_summary": (
        _columns(
            "as_of_run_key VARCHAR, n_runs INTEGER, k INTEGER, n_features INTEGER, kendall_w DOUBLE, "
            "mean_pairwise_spearman DOUBLE, latest_spearman DOUBLE, nogueira_phi DOUBLE, "
            "nogueira_ci_low DOUBLE, nogueira_ci_high DOUBLE, mean_trade_overlap DOUBLE, note VARCHAR, "
            "n_independent_runs INTEGER, n_effective_runs DOUBLE"
        ),
        ("as_of_run_key",),
    ),
    "feature_alpha": (
        _columns(
            "as_of_run_key VARCHAR, feature VARCHAR, n_runs INTEGER, ic_mean DOUBLE, ic_std DOUBLE, "
            "icir DOUBLE, n_effective_runs DOUBLE, ic_t_stat DOUBLE, ic_p_value DOUBLE, ic_q_value DOUBLE, "
            "significance DOUBLE, ic_sign_consistency DOUBLE, importance_share DOUBLE, "
            "importance_rel DOUBLE, "
            "stability DOUBLE, persistence DOUBLE, alpha_score DOUBLE, ic_slope DOUBLE, "
            "ic_slope_p_value DOUBLE, half_life_runs DOUBLE, decaying BOOLEAN, perf_corr DOUBLE, "
            "n_periods INTEGER, n_trades INTEGER, hac_lag INTEGER, ic_hac_se DOUBLE, ic_ci_low DOUBLE, "
            "ic_ci_high DOUBLE, n_effective_periods DOUBLE, ic_slope_se DOUBLE, ic_now DOUBLE, "
            "half_life_days DOUBLE, effect DOUBLE, n_recent_periods INTEGER, ic_recent DOUBLE, "
            "ic_before DOUBLE, ic_change DOUBLE, ic_change_t DOUBLE, ic_change_p_value DOUBLE, "
            "monitor_score DOUBLE, monitored BOOLEAN, ic_change_q_value DOUBLE, broken_down BOOLEAN, "
            "n_ensemble_runs INTEGER, all_models_top_k_frequency DOUBLE, mean_rank_gap DOUBLE, "
            "suspected_leak BOOLEAN, leak_runs INTEGER, alias_of VARCHAR, aliases VARCHAR, "
            "indicator BOOLEAN, pooled_ic_mean DOUBLE, pooled_ic_ci_low DOUBLE, pooled_ic_ci_high DOUBLE, "
            "pooled_ic_p_value DOUBLE, ic_mde DOUBLE, ic_verdict VARCHAR, decay_mde DOUBLE, "
            "decay_verdict VARCHAR, ic_change_mde DOUBLE, monitor_verdict VARCHAR"
        ),
        ("as_of_run_key", "feature"),
    ),
    "feature_ic_series": (
        _columns(
            "as_of_run_key VARCHAR, feature VARCHAR, period_start TIMESTAMPTZ, n_trades INTEGER, ic DOUBLE, "
            "pooled_ic DOUBLE"
        ),
        ("as_of_run_key", "feature", "period_start"),
    ),
    "feature_priors": (
        _columns(
            "as_of_run_key VARCHAR, feature VARCHAR, prior_coef DOUBLE, prior_strength DOUBLE, "
            "n_runs INTEGER, prior_coef_raw DOUBLE, prior_sd_raw DOUBLE, tau_between DOUBLE, "
            "informative BOOLEAN"
        ),
        ("as_of_run_key", "feature"),
    ),
    "regime_weights": (
        _columns(
            "as_of_run_key VARCHAR, regime VARCHAR, n_oos INTEGER, oos_error DOUBLE, weight DOUBLE, "
            "volatility_feature VARCHAR, trend_feature VARCHAR, volatility_cut_low DOUBLE, "
            "volatility_cut_high DOUBLE"
        ),
        ("as_of_run_key", "regime"),
    ),
}

# Keyed by the run they describe (`run_key`) or by the run they were computed as of (`as_of_run_key`).
RUN_KEY_COLUMNS = ("run_key", "as_of_run_key")
# the column a run's rows of each table are replaced by (trades and trade_loads go by date range)
RUN_TABLES: dict[str, str] = {
    table: columns[0][0] for table, (columns, _) in FIXED_TABLES.items() if columns[0][0] in RUN_KEY_COLUMNS
}

# A Dagster run writes its rows into the `staging` schema (same columns plus `staged_by`, the run's
# id); they reach the public tables in ONE transaction when the run's last stage is done
# (storage/publish.py). `replaced` lists the run keys a run replaces (also where it writes no row),
# `trade_ranges` the entry-date ranges whose trades it replaces, `stages_done` its finished stages.
STAGING_REGISTRY: dict[str, str] = {
    "replaced": "staged_by VARCHAR, table_name VARCHAR, key_value VARCHAR",
    "trade_ranges": "staged_by VARCHAR, range_start TIMESTAMPTZ, range_end TIMESTAMPTZ",
    "stages_done": "staged_by VARCHAR, stage VARCHAR, run_key VARCHAR",
}

# which stage writes which run-keyed tables, in the order of the graph: when a run publishes a stage
# but not the stages after it, their rows of the run key described the model it replaced and are
# removed (they are recomputed when those stages run again)
STAGE_TABLES: dict[str, tuple[str, ...]] = {
    "profit_model": (
        "run_metrics",
        "checkpoints",
        "oos_predictions",
        "sizing_performance",
        "ensemble_predictions",
        "ensemble_metrics",
        "excluded_features",
        "data_loss",
        "feature_coverage",
    ),
    "feature_importance": (
        "feature_importance_history",
        "importance_changes",
        "feature_interactions",
        "feature_segments",
        "ensemble_importance",
        "model_agreement",
    ),
    "feature_stability": ("feature_stability",),
    "stability_summary": ("stability_summary",),
    "feature_alpha": ("feature_alpha", "feature_ic_series"),
    "feature_priors": ("feature_priors", "regime_weights"),
}
STAGE_ORDER = ["trades", *STAGE_TABLES]


def column_names(table: str) -> list[str]:
    """The contract's columns of a fixed table (a `trades` table also has one column per feature)."""
    return [name for name, _ in FIXED_TABLES[checked_table(table)][0]]


def checked_table(table: str) -> str:
    """`table` if it is a table of the contract; anything else is refused before it reaches SQL."""
    if table not in FIXED_TABLES:
        raise ValueError(f"unknown table {table!r}")
    return table


def quote_identifier(name: str) -> str:
    """A DuckDB identifier for any name (quotes doubled); the one place a name enters SQL text."""
    if not name or "\x00" in name:
        raise ValueError(f"{name!r} cannot be a column name")
    return '"' + name.replace('"', '""') + '"'


def catalog_name(con: duckdb.DuckDBPyConnection) -> str:
    """The warehouse file's catalog, quoted (its name comes from the file name). Names qualified
    with it reach the stored tables even where a run's overlay views shadow them."""
    return quote_identifier(str(con.execute("SELECT current_database()").fetchall()[0][0]))


def _existing_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str]:
    return [
        row[0]
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ?"
            " ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
    ]


STAGED_BY = ("staged_by", "VARCHAR")  # the Dagster run a staged row belongs to
RESERVED_COLUMNS = (STAGED_BY[0],)


def _wanted_columns(schema: str, table: str) -> list[tuple[str, str]]:
    """A contract table's columns in the public schema, plus `staged_by` in its staging twin."""
    columns = FIXED_TABLES[table][0]
    return columns if schema == "main" else [*columns, STAGED_BY]


def _create_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> None:
    """Create a contract table (with its primary key in the public schema) or its staging twin."""
    body = ", ".join(f"{quote_identifier(name)} {kind}" for name, kind in _wanted_columns(schema, table))
    primary = ", ".join(quote_identifier(name) for name in FIXED_TABLES[table][1])
    constraint = f", PRIMARY KEY ({primary})" if schema == "main" else ""
    con.execute(f"CREATE TABLE {schema}.{table} ({body}{constraint})")


def has_contract(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the file holds the contract's tables (its run_metrics: one catalog lookup)."""
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
        " AND schema_name = 'main' AND table_name = 'run_metrics'"
    ).fetchone()
    return bool(found and found[0])


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table of the contract (and its staging twin) that is missing and add every
    missing column (NULL)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS staging")
    for table in FIXED_TABLES:
        for schema in ("main", "staging"):
            existing = set(_existing_columns(con, schema, table))
            if not existing:
                _create_table(con, schema, table)
                continue
            for name, kind in _wanted_columns(schema, table):
                if name not in existing:
                    con.execute(f"ALTER TABLE {schema}.{table} ADD COLUMN {quote_identifier(name)} {kind}")
    for table, body in STAGING_REGISTRY.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS staging.{table} ({body})")


def reset_staging_trades(con: duckdb.DuckDBPyConnection) -> None:
    """Recreate the staging trades table with the contract's columns only, when no run has trades
    staged: feature columns added by runs that never published do not outlive them."""
    con.execute("DROP TABLE IF EXISTS staging.trades")
    _create_table(con, "staging", "trades")


def refuse_case_clashes(stored: list[str], incoming: list[str]) -> None:
    """Refuse an incoming trades column whose name differs from a stored one only by letter case."""
    by_case = {name.casefold(): name for name in stored}
    for column in incoming:
        if column.casefold() in RESERVED_COLUMNS:
            raise InputDataError("warehouse table trades", column, None, "is a name the warehouse reserves")
        if column not in stored and column.casefold() in by_case:
            raise InputDataError(
                "warehouse table trades",
                column,
                None,
                f"differs from the stored column {by_case[column.casefold()]!r} only by letter case",
            )


def add_feature_columns(con: duckdb.DuckDBPyConnection, schema: str, columns: list[str]) -> None:
    """Add the columns a trades table (public `main` or `staging`) lacks; features are DOUBLE."""
    stored = set(_existing_columns(con, schema, "trades"))
    for column in columns:
        if column not in stored:
            con.execute(
                f"ALTER TABLE {catalog_name(con)}.{schema}.trades"
                f" ADD COLUMN {quote_identifier(column)} DOUBLE"
            )


def trades_columns(con: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    return _existing_columns(con, schema, "trades")
