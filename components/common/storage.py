"""Reading and writing the files stages hand each other: Parquet tables and JSON documents."""

import json
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["read_json", "read_table", "write_json", "write_table"]


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write a frame as Parquet, creating parent folders; the index is not kept.

    Args:
        frame: The table to write.
        path: Destination file.

    Returns:
        The path written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def read_table(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet table (a file or a folder of part files).

    Args:
        path: The file or folder.
        columns: Columns to read; all when None.

    Returns:
        The table.
    """
    return pd.read_parquet(path, columns=columns)


def write_json(document: Any, path: Path) -> Path:
    """Write a JSON document with sorted keys, creating parent folders.

    Args:
        document: Anything ``json.dumps`` accepts.
        path: Destination file.

    Returns:
        The path written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def read_json(path: Path) -> Any:
    """Read a JSON document written by ``write_json``."""
    return json.loads(path.read_text(encoding="utf-8"))
