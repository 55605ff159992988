"""The evaluate stage: a model's metrics on labelled rows."""
