"""Backtest: replay a labelled history under retraining policies and compare them."""
