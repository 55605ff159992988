"""Synthetic data fitted to real tables, its quality checks, and drift scenarios built on it."""
