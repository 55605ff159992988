"""Request bodies a client of the model server sends: V1 instances and V2 (Open Inference) inputs."""

import math
from typing import Any

import pandas as pd

from components.common.task import TaskSpec
from components.features.core import build_labels, input_columns


def instances(rows: pd.DataFrame, task: TaskSpec) -> list[dict[str, Any]]:
    """Rows as a client sends them: categories as strings, numbers as floats, missing as null."""
    result = []
    for record in rows.to_dict(orient="records"):
        instance: dict[str, Any] = {}
        for column, value in record.items():
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                instance[column] = None
            else:
                instance[column] = str(value) if column in task.categorical else float(value)
        result.append(instance)
    return result


def labelled_instances(rows: pd.DataFrame, task: TaskSpec) -> tuple[list[dict[str, Any]], list[int]]:
    """Validated rows as a client's V1 instances (the model's input columns) and their 0/1 labels."""
    return instances(rows[list(input_columns(task))], task), build_labels(rows, task).astype(int).tolist()


def v2_inputs(rows: list[dict[str, Any]], task: TaskSpec) -> list[dict[str, Any]]:
    """The same rows as V2 input tensors, one per model input column."""
    return [
        {
            "name": column,
            "shape": [len(rows)],
            "datatype": "BYTES" if column in task.categorical else "FP64",
            "data": [row[column] for row in rows],
        }
        for column in input_columns(task)
    ]
