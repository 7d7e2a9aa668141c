"""The errors of the user's input and of the order of materializations, not of our code: every layer
(core, storage, the Dagster shell) raises them, and the stages turn them into a step failure whose
message is the whole story (assets/stage.py), without a stack trace. This module imports nothing of
the project, so any layer may import it."""


class InputDataError(ValueError):
    """Bad input data: the message names the file, the column and the first offending row."""

    def __init__(self, source: str, column: str | None, row: int | None, problem: str):
        self.source, self.column, self.row, self.problem = source, column, row, problem
        where = [f"file {source}"]
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {problem}")


class NotEnoughDataError(ValueError):
    """Too few labelled trades to fit and evaluate a model honestly."""


class MissingRowsError(LookupError):
    """An upstream table has no rows for the run a stage needs: materialize the upstream stage first."""


class ReversedRangeError(ValueError):
    """A partition range whose end comes before its start."""
