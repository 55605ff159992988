"""The KServe model of a registered driftpilot model: V1 and V2 requests in, P(label = 1) out.

Both protocols become one DataFrame of the signature's input columns (strings for categorical
columns, float64 for numeric ones, null allowed for missing values) and the batch is scored
in one call. A payload that does not fit the signature is rejected with ``InvalidInput``, which
KServe answers with HTTP 400 and ``{"error": "<message>"}``.

What KServe 0.21 hands to ``preprocess``: for ``POST /v1/models/<name>:predict`` the decoded
JSON body (a dict, or a list, or raw bytes when the content type is not JSON); for
``POST /v2/models/<name>/infer`` an ``InferRequest`` whose inputs carry ``name``, ``shape``,
``datatype`` and ``data`` (nested or flat lists; binary and gRPC inputs decode via
``as_numpy``).
"""

import time
import uuid
from dataclasses import dataclass
from typing import Any

import kserve
import numpy as np
import pandas as pd
from kserve.errors import InvalidInput
from kserve.logging import logger
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from components.common.errors import ServingError
from components.deploy.core import parse_registry_uri, resolve_model_version
from components.serve.scoring import RowScorer
from components.train.model import TrainedModel

__all__ = [
    "OUTPUT_NAME",
    "DriftpilotModel",
    "InputColumn",
    "ScoringBatch",
    "columns_from_infer_request",
    "columns_from_instances",
    "columns_from_schema",
]

OUTPUT_NAME = "probability"
"""Name of the V2 output tensor: P(label = 1) per row, FP64."""

_MAX_PROBLEMS = 10
_NUMERIC_DATATYPES = frozenset(
    {"FP64", "FP32", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8"}
)
_V1_SHAPE = 'send {"instances": [{"<column>": <value>, ...}, ...]}'


@dataclass(frozen=True)
class InputColumn:
    """One request column of the model signature.

    Attributes:
        name: Column name.
        is_text: True for string (categorical) columns, False for float64 ones.
    """

    name: str
    is_text: bool

    @property
    def datatype(self) -> str:
        """The V2 tensor datatype clients should send: ``BYTES`` or ``FP64``."""
        return "BYTES" if self.is_text else "FP64"


@dataclass(frozen=True)
class ScoringBatch:
    """Rows to score and the V2 request they came from.

    Attributes:
        columns: One typed column per signature input, in signature order: a list of str or
            None for text columns, a float64 array (NaN for null) for numeric ones.
        rows: Number of rows.
        request: The V2 request (its id and requested outputs shape the reply); None for V1.
    """

    columns: dict[str, Any]
    rows: int
    request: InferRequest | None = None

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame (text columns as objects, numbers as float64)."""
        return pd.DataFrame(self.columns)


def columns_from_schema(schema: Any) -> tuple[InputColumn, ...]:
    """Read the request columns from an MLflow input schema.

    Args:
        schema: ``mlflow.types.Schema`` of the model's inputs (``metadata.get_input_schema()``).

    Returns:
        The columns in signature order.

    Raises:
        ServingError: When the schema is missing, is a tensor schema, or has a column type other
            than string or double.
    """
    from mlflow.types import DataType

    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        raise ServingError("the model has no column-based input signature; re-register it with one")
    columns = []
    for spec in schema.inputs:
        if spec.type == DataType.string:
            columns.append(InputColumn(str(spec.name), is_text=True))
        elif spec.type == DataType.double:
            columns.append(InputColumn(str(spec.name), is_text=False))
        else:
            raise ServingError(
                f"signature column {spec.name!r} has type {spec.type}; only string and double columns are served"
            )
    return tuple(columns)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _rows(noun: str, rows: list[int]) -> str:
    """``"row 3"`` or ``"rows 0, 1, 2 and 5 more"``."""
    if len(rows) == 1:
        return f"{noun} {rows[0]}"
    more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
    return f"{noun}s {', '.join(map(str, rows[:3]))}{more}"


def _decode(raw: bytes) -> str | bytes:
    """UTF-8 text of a BYTES element; undecodable bytes stay bytes (and are reported)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _convert(column: InputColumn, values: list[Any]) -> tuple[Any, list[str]]:
    """Type one column's values; return them and a problem when some have the wrong type."""
    bad: list[int] = []
    example = ""
    if column.is_text:
        texts: list[str | None] = []
        for row, value in enumerate(values):
            if isinstance(value, bytes):
                value = _decode(value)
            if value is None or isinstance(value, str):
                texts.append(value)
            else:
                bad.append(row)
                example = example or _describe(value)
                texts.append(None)
        converted: Any = texts
    else:
        numbers = np.full(len(values), np.nan, dtype="float64")
        for row, value in enumerate(values):
            if isinstance(value, int | float) and not isinstance(value, bool):
                numbers[row] = float(value)
            elif value is not None:
                bad.append(row)
                example = example or _describe(value)
        converted = numbers
    if not bad:
        return converted, []
    expected = "a string" if column.is_text else "a number"
    return converted, [f"column {column.name!r} expects {expected} or null, got {example} in {_rows('row', bad)}"]


def _raise_problems(problems: list[str], columns: tuple[InputColumn, ...]) -> None:
    if not problems:
        return
    shown = "; ".join(problems[:_MAX_PROBLEMS])
    more = f" (and {len(problems) - _MAX_PROBLEMS} more)" if len(problems) > _MAX_PROBLEMS else ""
    expected = ", ".join(f"{c.name}: {'string' if c.is_text else 'number'}" for c in columns)
    raise InvalidInput(f"invalid request: {shown}{more}. Expected columns: {expected}")


def _name_problems(given: list[str], columns: tuple[InputColumn, ...]) -> list[str]:
    """Problems with a set of column names: ``"lacks column(s) [...]"``, ``"has unknown ..."``."""
    known = {c.name for c in columns}
    missing = [c.name for c in columns if c.name not in given]
    unknown = sorted(set(given) - known)
    problems = []
    if missing:
        problems.append(f"lacks column(s) {missing}")
    if unknown:
        problems.append(f"has unknown column(s) {unknown}")
    return problems


def columns_from_instances(instances: Any, columns: tuple[InputColumn, ...]) -> dict[str, Any]:
    """Turn V1 instances (one ``{column: value}`` object per row) into typed columns.

    Args:
        instances: The ``instances`` list of a V1 request.
        columns: The signature's columns.

    Returns:
        One column per signature input: text as a list of str or None, numbers as float64 arrays.

    Raises:
        InvalidInput: When the list is empty or not a list, a row is not an object, a column is
            missing or unknown, or a value has the wrong type.
    """
    if not isinstance(instances, list):
        raise InvalidInput(f'"instances" must be a list of objects, got {_describe(instances)}; {_V1_SHAPE}')
    if not instances:
        raise InvalidInput(f'"instances" is empty: send at least one row; {_V1_SHAPE}')
    rows_by_problem: dict[str, list[int]] = {}
    for row, instance in enumerate(instances):
        if isinstance(instance, dict):
            found = _name_problems(list(instance), columns)
        else:
            found = [f"is not an object of column values but {_describe(instance)}"]
        for problem in found:
            rows_by_problem.setdefault(problem, []).append(row)
    _raise_problems([f"{_rows('instance', r)} {p}" for p, r in rows_by_problem.items()], columns)
    data: dict[str, Any] = {}
    problems: list[str] = []
    for column in columns:
        values = [instance[column.name] for instance in instances]
        data[column.name], found = _convert(column, values)
        problems.extend(found)
    _raise_problems(problems, columns)
    return data


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, np.ndarray):
        return list(data.reshape(-1).tolist())
    if isinstance(data, list | tuple):
        flat: list[Any] = []
        for item in data:
            flat.extend(_flatten(item) if isinstance(item, list | tuple | np.ndarray) else [item])
        return flat
    return [data]


def _tensor_values(tensor: Any) -> tuple[list[Any], list[str]]:
    """Return one input tensor's values as a flat list, or the problems with its shape."""
    shape = tensor.shape
    name = tensor.name
    if (
        not isinstance(shape, list | tuple)
        or not all(isinstance(d, int) and d >= 0 for d in shape)
        or not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1))
    ):
        return [], [f"input {name!r} has shape {shape}; send shape [rows] or [rows, 1]"]
    rows = shape[0]
    values = _flatten(tensor.data) if tensor.data is not None else []
    if not values and rows:
        try:  # gRPC raw contents or the binary extension
            values = _flatten(tensor.as_numpy())
        except (ValueError, TypeError, InvalidInput) as exc:
            return [], [f"input {name!r} carries no readable data: {exc}"]
    if len(values) != rows:
        return [], [f"input {name!r} has {len(values)} values but shape {shape}"]
    return values, []


def columns_from_infer_request(request: InferRequest, columns: tuple[InputColumn, ...]) -> dict[str, Any]:
    """Turn a V2 (Open Inference Protocol) request, one tensor per column, into typed columns.

    Args:
        request: The decoded V2 request.
        columns: The signature's columns.

    Returns:
        One column per signature input: text as a list of str or None, numbers as float64 arrays.

    Raises:
        InvalidInput: When there are no rows, a column is missing, unknown or repeated, a tensor
            has the wrong datatype or shape, tensors disagree on the row count, or a value has
            the wrong type.
    """
    inputs = list(request.inputs or [])
    names = [tensor.name for tensor in inputs]
    problems = [f"request {p}" for p in _name_problems(names, columns)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"request repeats input(s) {repeated}")
    _raise_problems(problems, columns)
    by_name = {tensor.name: tensor for tensor in inputs}
    data: dict[str, Any] = {}
    rows: dict[str, int] = {}
    for column in columns:
        tensor = by_name[column.name]
        datatype = str(tensor.datatype).upper()
        if column.is_text and datatype != "BYTES":
            problems.append(f"input {column.name!r} is {datatype}; this string column needs BYTES")
            continue
        if not column.is_text and datatype not in _NUMERIC_DATATYPES:
            problems.append(f"input {column.name!r} is {datatype}; this numeric column needs FP64 (or INT64)")
            continue
        values, found = _tensor_values(tensor)
        problems.extend(found)
        if found:
            continue
        rows[column.name] = len(values)
        data[column.name], found = _convert(column, values)
        problems.extend(found)
    _raise_problems(problems, columns)
    counts = sorted(set(rows.values()))
    if len(counts) > 1:
        raise InvalidInput(f"inputs disagree on the number of rows: {rows}")
    if counts == [0]:
        raise InvalidInput("the request has no rows: every input tensor is empty")
    return data


class DriftpilotModel(kserve.Model):
    """Serves one registered MLflow pyfunc model of driftpilot over KServe V1 and V2.

    Attributes:
        model_uri: The URI given (``models:/<name>@champion``, ``models:/<name>/3``, ``runs:/...``).
        tracking_uri: MLflow tracking/registry URI, or None for MLflow's default.
        model_version: Registered version loaded (None before ``load`` or for non-registry URIs).
        loaded_uri: The URI loaded; registry URIs are pinned to ``models:/<name>/<version>``.
        columns: The signature's request columns (empty before ``load``).
    """

    def __init__(self, name: str, model_uri: str, tracking_uri: str | None = None) -> None:
        super().__init__(name)
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self.model_version: str | None = None
        self.loaded_uri = ""
        self.columns: tuple[InputColumn, ...] = ()
        self._pyfunc: Any = None
        self._scorer: RowScorer | None = None

    def load(self) -> bool:
        """Resolve the version, load the pyfunc and read its signature.

        Returns:
            True (the model is ready).

        Raises:
            ModelRegistryError: When a registry alias or version does not exist.
            ServingError: When the model cannot be loaded or has no usable signature.
        """
        import mlflow
        from mlflow.exceptions import MlflowException

        started = time.monotonic()
        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
        registered = parse_registry_uri(self.model_uri)
        if registered is not None:
            # Load the version the alias names now, so the version reported is the one served.
            self.model_version = resolve_model_version(model_uri=self.model_uri, tracking_uri=self.tracking_uri)
            self.loaded_uri = f"models:/{registered.name}/{self.model_version}"
        else:
            self.loaded_uri = self.model_uri
        try:
            self._pyfunc = mlflow.pyfunc.load_model(self.loaded_uri)
        except (MlflowException, OSError) as exc:
            raise ServingError(f"cannot load {self.loaded_uri} (from {self.model_uri}): {exc}") from exc
        self.columns = columns_from_schema(self._pyfunc.metadata.get_input_schema())
        trained = getattr(self._pyfunc.unwrap_python_model(), "model", None)
        if isinstance(trained, TrainedModel) and RowScorer.supports(trained):
            self._scorer = RowScorer(trained)
        self.ready = True
        logger.info(
            "loaded %s as %r (version %s, %d input columns) in %.1f s",
            self.loaded_uri,
            self.name,
            self.model_version,
            len(self.columns),
            time.monotonic() - started,
        )
        return bool(self.ready)

    def get_input_types(self) -> list[dict[str, Any]]:
        """Describe the V2 inputs: one tensor per column (``GET /v2/models/<name>``)."""
        return [{"name": c.name, "datatype": c.datatype, "shape": [-1]} for c in self.columns]

    def get_output_types(self) -> list[dict[str, Any]]:
        """Describe the V2 output: ``probability``, FP64, one value per row."""
        return [{"name": OUTPUT_NAME, "datatype": "FP64", "shape": [-1]}]

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> ScoringBatch:
        """Validate a V1 or V2 payload against the signature and turn it into rows.

        Args:
            payload: A V1 body (dict) or a V2 ``InferRequest``.
            headers: Request headers (unused).

        Returns:
            The rows to score.

        Raises:
            InvalidInput: When the payload does not fit the signature (HTTP 400).
        """
        if isinstance(payload, InferRequest):
            data = columns_from_infer_request(payload, self.columns)
            return ScoringBatch(data, len(next(iter(data.values()))), request=payload)
        if isinstance(payload, dict) and "instances" in payload:
            data = columns_from_instances(payload["instances"], self.columns)
            return ScoringBatch(data, len(payload["instances"]))
        if isinstance(payload, bytes | str):
            raise InvalidInput(f"the body is not JSON (set Content-Type: application/json); {_V1_SHAPE}")
        raise InvalidInput(f'expected a JSON object with an "instances" list; {_V1_SHAPE}')

    def score(self, batch: ScoringBatch) -> np.ndarray:
        """P(label = 1) per row: through ``RowScorer`` for LightGBM, else through the MLflow pyfunc.

        Raises:
            InvalidInput: When MLflow's own schema check rejects the rows (HTTP 400).
        """
        if self._scorer is not None:
            return self._scorer.score(batch.columns, batch.rows)
        from mlflow.exceptions import MlflowException

        try:
            scores = self._pyfunc.predict(batch.frame)
        except MlflowException as exc:
            if exc.error_code == "INVALID_PARAMETER_VALUE":
                raise InvalidInput(f"the model rejected the rows: {exc.message}") from exc
            raise
        return np.asarray(scores, dtype="float64").reshape(-1)

    def predict(self, payload: ScoringBatch, headers: dict[str, str] | None = None) -> dict[str, Any] | InferResponse:
        """Score the batch in one call.

        Args:
            payload: Rows from ``preprocess``.
            headers: Request headers (unused).

        Returns:
            ``{"predictions": [p, ...]}`` for V1; for V2 an ``InferResponse`` with one FP64 output
            ``probability`` of shape ``[rows]``.

        Raises:
            InvalidInput: When MLflow's own schema check rejects the rows (HTTP 400).
        """
        return self.respond(payload, self.score(payload))

    def respond(self, payload: ScoringBatch, probabilities: np.ndarray) -> dict[str, Any] | InferResponse:
        """The V1 or V2 answer carrying a batch's scores."""
        if payload.request is None:
            return {"predictions": probabilities.tolist()}
        output = InferOutput(name=OUTPUT_NAME, shape=[len(probabilities)], datatype="FP64", data=probabilities.tolist())
        return InferResponse(
            response_id=payload.request.id or str(uuid.uuid4()),
            model_name=self.name,
            model_version=self.model_version,
            infer_outputs=[output],
            use_binary_outputs=payload.request.use_binary_outputs,
            requested_outputs=payload.request.request_outputs,
        )
