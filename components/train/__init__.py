"""The train stage: LightGBM models for a task, and the window of rows to retrain on."""
