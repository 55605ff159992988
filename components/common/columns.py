"""Typing GDELT's text fields: the one place that says what a valid int, float or date looks like."""

import numpy as np
import pandas as pd
import pyarrow as pa

from components.common.schema import COLUMN_KINDS, ColumnKind

__all__ = ["ARROW_TYPES", "EVENTS_SCHEMA", "parse_column"]

ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    ColumnKind.INT: pa.int64(),
    ColumnKind.FLOAT: pa.float64(),
    ColumnKind.STRING: pa.string(),
    ColumnKind.DATE8: pa.int64(),
    ColumnKind.TIMESTAMP14: pa.int64(),
}
"""Arrow type of each column kind in the lake (dates stay ``YYYYMMDD[HHMMSS]`` integers)."""

EVENTS_SCHEMA = pa.schema([(column, ARROW_TYPES[kind]) for column, kind in COLUMN_KINDS.items()])
"""The typed GDELT 2.0 Events table."""


def parse_column(column: pd.Series, kind: ColumnKind) -> pd.Series:
    """Parse a string column to its kind; unparseable non-empty values become NaN.

    Args:
        column: Stripped strings ('' for empty).
        kind: The column's kind.

    Returns:
        The strings unchanged for ``STRING``; floats (NaN where empty or invalid) otherwise.
    """
    if kind is ColumnKind.STRING:
        return column
    numbers = pd.to_numeric(column, errors="coerce")
    if kind is ColumnKind.DATE8:
        parsed = pd.to_datetime(column, format="%Y%m%d", errors="coerce")
        return numbers.where(parsed.notna())
    if kind is ColumnKind.TIMESTAMP14:
        parsed = pd.to_datetime(column, format="%Y%m%d%H%M%S", errors="coerce")
        return numbers.where(parsed.notna())
    if kind is ColumnKind.INT:
        # Whole numbers a float holds exactly; "inf" and "1e400" are not integers.
        whole = np.isfinite(numbers) & (numbers == np.floor(numbers)) & (numbers.abs() <= 2**53)
        return numbers.where(numbers.isna() | whole)
    return numbers
