"""Declarative prediction tasks: which column is the label and which columns are features.

A task is a small YAML file (see ``components/common/tasks/``)::

    name: gdelt-tone
    description: ...
    id_column: GLOBALEVENTID
    group_column: SOURCEURL
    time_column: DATEADDED
    target: {column: AvgTone, op: lt, value: -5.0}
    categorical: [EventCode, QuadClass, ...]
    numeric: [NumMentions, ...]
    derived: [event_age_days]

The same loop serves any tabular binary task whose spec names its columns.
"""

import operator
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from components.common.errors import ConfigError

__all__ = ["TargetRule", "TaskSpec", "load_task"]

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
}


@dataclass(frozen=True)
class TargetRule:
    """A binary label derived from one column: ``label = column <op> value``.

    Attributes:
        column: Source column of the label.
        op: One of ``lt``, ``le``, ``gt``, ``ge``, ``eq``.
        value: Right-hand side of the comparison.
    """

    column: str
    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ConfigError(f"target op {self.op!r} is not one of {sorted(_OPS)}")

    def apply(self, values: Any) -> Any:
        """Return the 0/1 labels for a Series (or array) of source values."""
        return _OPS[self.op](values, self.value).astype("int8")

    def describe(self) -> str:
        """Return the rule as text, e.g. ``AvgTone < -5.0``."""
        symbol = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "=="}[self.op]
        return f"{self.column} {symbol} {self.value}"


@dataclass(frozen=True)
class TaskSpec:
    """A binary classification task over one table.

    Attributes:
        name: Short name; also the default registered model name.
        target: How the label is computed.
        categorical: Feature columns treated as categories (kept as strings).
        numeric: Feature columns treated as numbers.
        derived: Names of derived features computed by ``components.features``.
        id_column: Unique row id.
        group_column: Rows sharing a value are kept on the same side of every split
            (GDELT: events coded from one article share its tone, so they must not straddle).
        time_column: Column that orders batches in time.
        description: One line for people.
        population_positive_rate: Positive rate of the rows the model serves, when the training
            rows are known to hold a different one (0: they hold the same). Predictions are
            moved to it (see ``components.train.model.prior_corrected``) and evaluation weighs
            the negatives up to it.
        min_train_positive_rate: When training rows hold fewer positives than this, negatives
            are undersampled to reach it (0: never); the prior correction undoes the shift.
    """

    name: str
    target: TargetRule
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    derived: tuple[str, ...] = ()
    id_column: str = "id"
    group_column: str = ""
    time_column: str = ""
    description: str = ""
    population_positive_rate: float = 0.0
    min_train_positive_rate: float = 0.0

    def __post_init__(self) -> None:
        for rate in (self.population_positive_rate, self.min_train_positive_rate):
            if not 0.0 <= rate < 1.0:
                raise ConfigError(f"task {self.name!r}: positive rates must be in [0, 1), got {rate}")

    @property
    def split_column(self) -> str:
        """Column whose hash assigns rows to splits: the group column, else the id."""
        return self.group_column or self.id_column

    @property
    def features(self) -> tuple[str, ...]:
        """All model inputs in model order: categorical, numeric, then derived."""
        return (*self.categorical, *self.numeric, *self.derived)

    @property
    def source_columns(self) -> tuple[str, ...]:
        """Columns a raw table must carry to build the features (derived inputs excluded)."""
        return (*self.categorical, *self.numeric)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskSpec":
        """Build a spec from parsed YAML/JSON.

        Raises:
            ConfigError: When a key is missing or has the wrong shape.
        """
        try:
            target = TargetRule(**data["target"])
            spec = cls(
                name=str(data["name"]),
                target=target,
                categorical=tuple(data.get("categorical", ())),
                numeric=tuple(data.get("numeric", ())),
                derived=tuple(data.get("derived", ())),
                id_column=str(data.get("id_column", "id")),
                group_column=str(data.get("group_column", "")),
                time_column=str(data.get("time_column", "")),
                description=str(data.get("description", "")),
                population_positive_rate=float(data.get("population_positive_rate", 0.0)),
                min_train_positive_rate=float(data.get("min_train_positive_rate", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed task spec: {exc!r}; see components/common/task.py") from exc
        if not spec.features:
            raise ConfigError(f"task {spec.name!r} names no features")
        if target.column in spec.features:
            raise ConfigError(f"task {spec.name!r} uses its target column {target.column} as a feature")
        return spec

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain data (the inverse of ``from_dict``)."""
        return {
            "name": self.name,
            "description": self.description,
            "id_column": self.id_column,
            "group_column": self.group_column,
            "time_column": self.time_column,
            "target": {"column": self.target.column, "op": self.target.op, "value": self.target.value},
            "categorical": list(self.categorical),
            "numeric": list(self.numeric),
            "derived": list(self.derived),
            "population_positive_rate": self.population_positive_rate,
            "min_train_positive_rate": self.min_train_positive_rate,
        }


def load_task(name_or_path: str) -> TaskSpec:
    """Load a task by built-in name (``gdelt-tone``) or from a YAML file path.

    Args:
        name_or_path: A built-in task name or a path to a task YAML file.

    Returns:
        The parsed task.

    Raises:
        ConfigError: When no such task exists or the file is malformed.
    """
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} and path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        builtin = resources.files("components.common").joinpath("tasks", f"{name_or_path}.yaml")
        if not builtin.is_file():
            raise ConfigError(f"unknown task {name_or_path!r}: give a built-in name (gdelt-tone) or a YAML path")
        text = builtin.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError(f"task {name_or_path!r} is not a YAML mapping")
    return TaskSpec.from_dict(data)
