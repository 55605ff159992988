"""Turn validated rows into model inputs and labels, as a task spec says.

Categorical features become pandas ``category`` columns (LightGBM reads them natively and maps
unseen categories to missing at prediction time); numeric ones become ``float64``.
"""

import datetime as dt
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from components.common.errors import ConfigError
from components.common.task import TaskSpec

__all__ = [
    "DERIVED_FEATURES",
    "DERIVED_ROW_FEATURES",
    "build_features",
    "build_labels",
    "input_columns",
    "split_by_key",
]


def _event_age_days(frame: pd.DataFrame) -> pd.Series:
    """Days between the event (SQLDATE) and its first report (DATEADDED): old news resurfacing."""

    def digits(column: str) -> pd.Series:  # ints, floats (from JSON) and strings alike
        return pd.to_numeric(frame[column], errors="coerce").astype("Int64").astype("string")

    event = pd.to_datetime(digits("SQLDATE"), format="%Y%m%d", errors="coerce")
    added = pd.to_datetime(digits("DATEADDED").str[:8], format="%Y%m%d", errors="coerce")
    return (added - event).dt.days.astype("float64")


def _digits(value: object) -> str:
    """A number's or numeric string's integer digits, as ``_event_age_days`` reads them ('' if none)."""
    try:
        return str(int(value.strip()) if isinstance(value, str) else int(float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return ""


def _day(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def _event_age_days_row(sqldate: object, dateadded: object) -> float:
    """``_event_age_days`` for one row, without pandas (the model server's single-row path)."""
    event, added = _day(_digits(sqldate)), _day(_digits(dateadded)[:8])
    return float((added - event).days) if event and added else math.nan


DERIVED_FEATURES: dict[str, tuple[tuple[str, ...], Callable[[pd.DataFrame], pd.Series]]] = {
    "event_age_days": (("SQLDATE", "DATEADDED"), _event_age_days),
}
"""Derived features by name: the columns each needs and how it is computed."""

DERIVED_ROW_FEATURES: dict[str, Callable[..., float]] = {"event_age_days": _event_age_days_row}
"""The same derived features computed from one row's values (the needed columns, in order)."""


def input_columns(task: TaskSpec) -> tuple[str, ...]:
    """Columns a caller must send to score a row: the source features plus derived inputs.

    Raises:
        ConfigError: When a derived feature is unknown.
    """
    columns = list(task.source_columns)
    for name in task.derived:
        if name not in DERIVED_FEATURES:
            raise ConfigError(f"unknown derived feature {name!r}; known: {sorted(DERIVED_FEATURES)}")
        columns.extend(c for c in DERIVED_FEATURES[name][0] if c not in columns)
    return tuple(columns)


def build_features(frame: pd.DataFrame, task: TaskSpec) -> pd.DataFrame:
    """Return the model inputs of a task, in the task's feature order.

    Args:
        frame: Validated rows (or a request's rows) carrying the task's source columns.
        task: The task spec.

    Returns:
        One column per feature: categories as ``category`` (empty strings count as missing),
        numbers as ``float64``.

    Raises:
        ConfigError: When a column the task needs is missing or a derived feature is unknown.
    """
    missing = sorted(set(input_columns(task)) - set(frame.columns))
    if missing:
        raise ConfigError(f"input lacks columns {missing} needed by task {task.name!r}")
    columns: dict[str, object] = {}
    for column in task.categorical:
        values = frame[column].astype("string").str.strip()
        columns[column] = pd.Categorical(values.where(values.notna() & (values != ""), None).astype(object))
    numeric = frame[list(task.numeric)]
    if all(pd.api.types.is_numeric_dtype(dtype) for dtype in numeric.dtypes):
        block = numeric.to_numpy(dtype="float64", na_value=np.nan)  # one conversion for every column
        columns.update({column: block[:, i] for i, column in enumerate(task.numeric)})
    else:
        for column in task.numeric:
            columns[column] = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    for name in task.derived:
        columns[name] = DERIVED_FEATURES[name][1](frame).to_numpy()
    # Built in one go: inserting columns one by one costs ~0.5 ms each, which a one-row request feels.
    return pd.DataFrame(columns, index=frame.index)


def build_labels(frame: pd.DataFrame, task: TaskSpec) -> pd.Series:
    """Return the task's 0/1 labels.

    Raises:
        ConfigError: When the target column is missing.
    """
    column = task.target.column
    if column not in frame.columns:
        raise ConfigError(f"input lacks target column {column!r} of task {task.name!r}")
    values = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return pd.Series(task.target.apply(values.to_numpy()), index=frame.index, name="label")


def split_by_key(keys: pd.Series, fraction: float, *, salt: str = "driftpilot") -> np.ndarray:
    """Assign rows to a held-out part deterministically from a key (a row id or a group id).

    The same key always lands on the same side, whatever the batch or row order.

    Args:
        keys: One key per row.
        fraction: Share of rows to hold out, in [0, 1].
        salt: Changes the assignment without changing the share.

    Returns:
        A boolean array, True for held-out rows.
    """
    hashed = pd.util.hash_pandas_object(keys.astype(str) + salt, index=False).to_numpy()
    return (hashed % 10_000) < round(fraction * 10_000)
