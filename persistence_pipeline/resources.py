"""Where things are stored and how runs are configured: the DuckDB warehouse, the checkpoint store,
the trade source and the model settings. Defaults work on the embedded data; every field can be set
from the environment (see definitions.py) or in a run's config under `resources`.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from persistence_pipeline.core.importance import ImportanceParams
from persistence_pipeline.core.model import ModelParams
from persistence_pipeline.core.schema import InputDataError
from persistence_pipeline.core.strategies import StrategyParams
from persistence_pipeline.core.trade_sources import load_source_trades

# The only types a checkpoint may hold beyond skops' defaults (HistGradientBoosting's tree nodes).
TRUSTED_CHECKPOINT_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]

FIXED_TABLES = {
    "trades": """
        trade_id VARCHAR PRIMARY KEY, symbol VARCHAR NOT NULL, strategy VARCHAR NOT NULL,
        entry_time TIMESTAMPTZ NOT NULL, exit_time TIMESTAMPTZ NOT NULL,
        entry_price DOUBLE NOT NULL, exit_price DOUBLE NOT NULL, side TINYINT NOT NULL, "return" DOUBLE NOT NULL""",
    "run_metrics": """
        run_key VARCHAR PRIMARY KEY, range_start DATE NOT NULL, range_end DATE NOT NULL, dagster_run_id VARCHAR,
        model_kind VARCHAR NOT NULL, n_trades INTEGER, n_train INTEGER, n_unrealized INTEGER, n_features INTEGER,
        n_folds INTEGER, n_oos INTEGER, oos_rank_ic DOUBLE, oos_r2 DOUBLE, oos_hit_rate DOUBLE, oos_n_taken INTEGER,
        oos_mean_return_taken DOUBLE, oos_mean_return_all DOUBLE, priors_from_run_key VARCHAR, seed INTEGER,
        model_params VARCHAR, library_versions VARCHAR, explainer VARCHAR, shap_sample_size INTEGER,
        created_at TIMESTAMPTZ NOT NULL""",
    "checkpoints": """
        run_key VARCHAR PRIMARY KEY, model_kind VARCHAR NOT NULL, range_start DATE NOT NULL, range_end DATE NOT NULL,
        path VARCHAR NOT NULL, sha256 VARCHAR NOT NULL, oos_rank_ic DOUBLE, oos_r2 DOUBLE, oos_hit_rate DOUBLE,
        created_at TIMESTAMPTZ NOT NULL""",
    "feature_importance_history": """
        run_key VARCHAR NOT NULL, feature VARCHAR NOT NULL, range_end DATE NOT NULL, coef DOUBLE,
        shap_mean_abs DOUBLE, perm_importance DOUBLE, perm_importance_std DOUBLE, ic DOUBLE, rank INTEGER,
        PRIMARY KEY (run_key, feature)""",
    "feature_priors": """
        as_of_run_key VARCHAR NOT NULL, feature VARCHAR NOT NULL, prior_coef DOUBLE, prior_strength DOUBLE,
        n_runs INTEGER, PRIMARY KEY (as_of_run_key, feature)""",
}


def canonical_skops(payload: bytes) -> bytes:
    """The same skops archive with deterministic bytes, so one model gives one sha256.

    skops names its array files and `__id__` memo keys after Python object ids and stamps every
    zip member with the current time; both change from process to process. We renumber the ids in
    order of first appearance in schema.json and give every member a fixed timestamp.
    """
    source = zipfile.ZipFile(io.BytesIO(payload))
    schema = source.read("schema.json").decode("utf-8")
    ids: dict[str, str] = {}
    for match in re.finditer(r'"__id__": (\d+)|"file": "(\d+)\.\w+"', schema):
        ids.setdefault(match.group(1) or match.group(2), str(len(ids) + 1))
    schema = re.sub(r'("__id__": )(\d+)', lambda m: m.group(1) + ids[m.group(2)], schema)
    schema = re.sub(r'("file": ")(\d+)(\.\w+")', lambda m: m.group(1) + ids[m.group(2)] + m.group(3), schema)
    members = {"schema.json": schema.encode("utf-8")}
    for info in source.infolist():
        if info.filename != "schema.json":
            stem, _, suffix = info.filename.partition(".")
            members[f"{ids[stem]}.{suffix}"] = source.read(info)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            target.writestr(info, members[name])
    return out.getvalue()


def quote_identifier(name: str) -> str:
    """A DuckDB identifier for any name (quotes doubled); the one place a name enters SQL text."""
    if not name or "\x00" in name:
        raise ValueError(f"{name!r} cannot be a column name")
    return '"' + name.replace('"', '""') + '"'


class Warehouse(dg.ConfigurableResource):
    """The DuckDB file whose tables are the public data contract (README)."""

    path: str = "data/warehouse.duckdb"
    lock_wait_seconds: float = 300.0

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the schema in place. DuckDB allows one writing process per file, so a
        second run waits here (retrying while the file is locked) until the first one is done."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_wait_seconds
        while True:
            try:
                con = duckdb.connect(self.path)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        try:
            con.execute("SET TimeZone = 'UTC'")
            for table, columns in FIXED_TABLES.items():
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All writes inside commit together or not at all."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def table(self, name: str) -> pd.DataFrame:
        if name not in FIXED_TABLES:
            raise ValueError(f"unknown table {name!r}")
        return self.query(f"SELECT * FROM {name}")

    def trades_between(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Stored trades entered in [start, end), in entry order."""
        return self.query(
            "SELECT * FROM trades WHERE entry_time >= ? AND entry_time < ? ORDER BY entry_time, trade_id", [start, end]
        )

    def replace_trades(self, trades: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> None:
        """Replace the trades entered in [start, end) with `trades`, in one transaction."""
        with self.transaction() as con:
            stored = {row[0] for row in con.execute("DESCRIBE trades").fetchall()}
            for column in trades.columns:
                if column not in stored:
                    con.execute(f"ALTER TABLE trades ADD COLUMN {quote_identifier(column)} DOUBLE")
            con.register("incoming_trades", trades)
            clash = con.execute(
                "SELECT t.trade_id, t.entry_time FROM trades t JOIN incoming_trades i USING (trade_id)"
                " WHERE t.entry_time < ? OR t.entry_time >= ? ORDER BY t.trade_id LIMIT 1",
                [start, end],
            ).fetchone()
            if clash:
                raise InputDataError(
                    "warehouse table trades", "trade_id", None,
                    f"trade_id {clash[0]!r} is already stored with entry {clash[1]}, outside this range",
                )
            con.execute("DELETE FROM trades WHERE entry_time >= ? AND entry_time < ?", [start, end])
            con.execute("INSERT INTO trades BY NAME SELECT * FROM incoming_trades")
            con.unregister("incoming_trades")

    def replace_run_rows(self, con: duckdb.DuckDBPyConnection, table: str, key_column: str, key: str, rows: pd.DataFrame) -> None:
        """Inside a transaction: delete `table`'s rows for one run key, insert `rows` by column name."""
        if table not in FIXED_TABLES or key_column not in ("run_key", "as_of_run_key"):
            raise ValueError(f"unknown table or key {table!r}.{key_column!r}")
        con.execute(f"DELETE FROM {table} WHERE {key_column} = ?", [key])
        con.register("incoming_rows", rows)
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_rows")
        con.unregister("incoming_rows")

    def latest_priors(self, before: pd.Timestamp) -> tuple[str, pd.Series] | None:
        """The newest stored priors computed as of a run that ended before `before`: (run_key, prior_coef by feature)."""
        rows = self.query(
            "SELECT p.as_of_run_key, p.feature, p.prior_coef FROM feature_priors p"
            " JOIN run_metrics r ON r.run_key = p.as_of_run_key"
            " WHERE p.as_of_run_key = (SELECT r2.run_key FROM run_metrics r2 JOIN feature_priors p2"
            "   ON p2.as_of_run_key = r2.run_key WHERE r2.range_end < ?"
            "   ORDER BY r2.range_end DESC, r2.range_start DESC, r2.run_key LIMIT 1)",
            [before.date()],
        )
        if rows.empty:
            return None
        return str(rows["as_of_run_key"].iloc[0]), rows.set_index("feature")["prior_coef"]


class CheckpointStore(dg.ConfigurableResource):
    """Model checkpoints as skops files, content-addressed under `directory`; the index is the
    warehouse's `checkpoints` table. Files are loaded only through skops with an explicit list of
    trusted types, and only when their sha256 matches the index."""

    directory: str = "data/checkpoints"

    def save(self, checkpoint: dict, run_key: str) -> tuple[str, str]:
        """Write the checkpoint; returns (path, sha256). The file name carries its hash, so a run that
        fails later never overwrites the file an existing index row points to."""
        import skops.io as sio

        payload = canonical_skops(sio.dumps(checkpoint))
        digest = hashlib.sha256(payload).hexdigest()
        folder = Path(self.directory) / run_key.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest[:16]}.skops"
        partial = path.with_suffix(".partial")
        partial.write_bytes(payload)
        os.replace(partial, path)
        return str(path), digest

    def remove_superseded(self, run_key: str, keep_path: str) -> None:
        """After the index row is committed: delete the run's older checkpoint files."""
        for old in (Path(self.directory) / run_key.replace("/", "_")).glob("*.skops"):
            if old != Path(keep_path):
                old.unlink()

    def load(self, path: str, sha256: str) -> dict:
        import skops.io as sio

        payload = Path(path).read_bytes()
        if hashlib.sha256(payload).hexdigest() != sha256:
            raise ValueError(f"checkpoint {path} does not match the sha256 in the checkpoints index: refusing to load it")
        untrusted = [t for t in sio.get_untrusted_types(data=payload) if t not in TRUSTED_CHECKPOINT_TYPES]
        if untrusted:
            raise ValueError(f"checkpoint {path} contains types that are not trusted: {untrusted}")
        return sio.loads(payload, trusted=TRUSTED_CHECKPOINT_TYPES)


class TradeSource(dg.ConfigurableResource):
    """Where trades come from: `embedded` (built-in strategies on the embedded bars), `ohlcv_dir`
    (the same strategies on a directory of the user's OHLCV files) or `trade_log_dir` (a directory
    of the user's trade logs, CSV or Parquet)."""

    kind: str = "embedded"
    path: str = ""
    features: list[str] = []
    z_entry: float = 1.0
    breakout_window: int = 20
    stop_atr: float = 2.0
    max_hold: int = 10

    def describe(self) -> str:
        return "embedded data (data/stocks_daily.parquet)" if self.kind == "embedded" else f"{self.kind} {self.path}"

    def load(self) -> pd.DataFrame:
        params = StrategyParams(self.z_entry, self.breakout_window, self.stop_atr, self.max_hold)
        return load_source_trades(self.kind, self.path, self.features or None, params)


class ModelSettings(dg.ConfigurableResource):
    """How the profit model is fit, evaluated and explained (shared by profit_model and feature_importance)."""

    kind: str = "ridge"
    ridge_alpha: float = 10.0
    n_folds: int = 5
    embargo_days: float = 1.0
    min_train_trades: int = 50
    seed: int = 0
    perm_repeats: int = 5
    shap_sample_size: int = 2000
    perm_sample_size: int = 20000

    def model_params(self) -> ModelParams:
        return ModelParams(
            kind=self.kind, ridge_alpha=self.ridge_alpha, n_folds=self.n_folds, embargo_days=self.embargo_days,
            min_train_trades=self.min_train_trades, seed=self.seed,
        )

    def importance_params(self) -> ImportanceParams:
        return ImportanceParams(
            perm_repeats=self.perm_repeats, shap_sample_size=self.shap_sample_size,
            perm_sample_size=self.perm_sample_size, seed=self.seed,
        )
