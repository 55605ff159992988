"""The drift stage: per-feature tests with false-discovery control, and Evidently's report."""
