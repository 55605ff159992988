"""The drift command's inputs: tables from GDELT exports, Parquet or CSV files, and column roles.

A path is read by what it is: a GDELT 2.0 export (``*.export.CSV``, plain or zipped; rows the
parser rejects are kept, with their reasons, for the caller to quarantine), a Parquet file or
folder, or a CSV file with a header. Without a task, columns get their roles from their types:
numbers are numeric features, text, booleans and categories are categorical features, and
identifier-like columns (integers all distinct, text almost all distinct) are left out with the
reason said.
"""

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from components.common.errors import ConfigError, DataValidationError
from components.common.quarantine import QuarantinedRow

__all__ = ["ColumnRoles", "InputTable", "infer_roles", "is_gdelt_export", "read_input", "target_is_discrete"]

_ID_SHARE = 0.9
_ID_MIN_VALUES = 50
_DISCRETE_TARGET_VALUES = 20


@dataclass(frozen=True)
class InputTable:
    """A table read for the drift command.

    Attributes:
        frame: The accepted rows.
        rejected: Rows a GDELT export's parser rejected, with their reasons.
        gdelt: Whether the file was a GDELT export.
    """

    frame: pd.DataFrame
    rejected: list[QuarantinedRow] = field(default_factory=list)
    gdelt: bool = False


@dataclass(frozen=True)
class ColumnRoles:
    """Which columns are compared, and how.

    Attributes:
        numeric: Numeric features.
        categorical: Categorical features.
        skipped: Columns left out, with the reason.
    """

    numeric: list[str]
    categorical: list[str]
    skipped: dict[str, str] = field(default_factory=dict)


def is_gdelt_export(path: Path) -> bool:
    """Whether a path names a GDELT 2.0 events export (``YYYYMMDDHHMMSS.export.CSV[.zip]``)."""
    return ".export.csv" in path.name.lower()


def read_input(path: Path) -> InputTable:
    """Read a GDELT export, a Parquet file (or folder of them) or a CSV file with a header.

    Args:
        path: The file.

    Returns:
        The table, and the rows a GDELT export's parser rejected.

    Raises:
        DataValidationError: When the file is missing, empty, or not one of those formats.
    """
    if not path.exists():
        raise DataValidationError(f"{path}: no such file")
    if is_gdelt_export(path):
        from components.ingest.core import read_export

        parsed = read_export(path)
        if parsed.table is None:
            raise DataValidationError(f"{path}: not a readable GDELT export ({parsed.file_reason})")
        return InputTable(parsed.table.to_pandas(), list(parsed.rejected), gdelt=True)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in {".parquet", ".pq"}:
        frame = pd.read_parquet(path)
    elif suffix in {".csv", ".gz", ".zip", ".tsv"}:
        try:
            frame = pd.read_csv(path, sep=None, engine="python") if suffix == ".tsv" else pd.read_csv(path)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataValidationError(f"{path}: not a CSV file with a header ({exc})") from exc
    else:
        raise DataValidationError(
            f"{path}: unknown format; give a GDELT export (*.export.CSV[.zip]), a Parquet file or a CSV with a header"
        )
    if frame.empty:
        raise DataValidationError(f"{path}: the table has no rows")
    return InputTable(frame)


def infer_roles(frame: pd.DataFrame, *, exclude: tuple[str, ...] = ()) -> ColumnRoles:
    """Give every column a role from its type.

    Args:
        frame: Reference rows.
        exclude: Columns never compared as features (the target).

    Returns:
        Numeric and categorical features, and the columns skipped with why.

    Raises:
        ConfigError: When no column is left to compare.
    """
    numeric: list[str] = []
    categorical: list[str] = []
    skipped: dict[str, str] = {}
    for column in frame.columns:
        name = str(column)
        values = frame[column]
        if name in exclude:
            continue
        if values.isna().all():
            skipped[name] = "every reference value is missing"
        elif pd.api.types.is_bool_dtype(values):
            categorical.append(name)
        elif pd.api.types.is_integer_dtype(values) and len(values) >= _ID_MIN_VALUES and values.is_unique:
            skipped[name] = "identifier-like: integers, every value distinct"
        elif pd.api.types.is_numeric_dtype(values):
            numeric.append(name)
        elif isinstance(values.dtype, pd.CategoricalDtype) or values.nunique() < max(
            _ID_MIN_VALUES, _ID_SHARE * values.notna().sum()
        ):
            categorical.append(name)
        else:
            skipped[name] = "identifier-like: almost every value is distinct"
    if not numeric and not categorical:
        raise ConfigError(f"no column to compare (skipped: {skipped})")
    return ColumnRoles(numeric, categorical, skipped)


def target_is_discrete(values: pd.Series) -> bool:
    """Whether a target is compared as classes (text, booleans, or few distinct numbers)."""
    return not pd.api.types.is_numeric_dtype(values) or values.nunique() <= _DISCRETE_TARGET_VALUES
