"""The register stage: MLflow runs, registered versions and the champion/challenger aliases."""
