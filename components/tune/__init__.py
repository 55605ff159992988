"""Hyperparameter tuning: an Optuna study shared by parallel workers."""
