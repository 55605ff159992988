"""The error hierarchy: every error driftpilot raises on purpose derives from DriftpilotError."""

__all__ = [
    "ConfigError",
    "DataValidationError",
    "DriftpilotError",
    "IngestError",
    "ModelRegistryError",
    "ServingError",
    "StoreError",
]


class DriftpilotError(Exception):
    """Base class of driftpilot's errors."""


class ConfigError(DriftpilotError):
    """A setting, task spec or pipeline parameter is missing or malformed."""


class IngestError(DriftpilotError):
    """No input could be read at all (every source was missing or quarantined)."""


class DataValidationError(DriftpilotError):
    """A batch has no rows left that pass validation."""


class ModelRegistryError(DriftpilotError):
    """The model registry lacks what a stage needs (no champion, unknown version)."""


class ServingError(DriftpilotError):
    """A model server could not be started, reached or stopped."""


class StoreError(DriftpilotError, OSError):
    """The lake's object store could not be reached, even after retries.

    An ``OSError`` too, as the filesystem's own errors are: code that keeps its rows when the lake
    cannot be written (the monitor's flush) handles it as it did before the retries.
    """
