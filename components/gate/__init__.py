"""Promotion gate: the challenger replaces the champion only if it does better on fresh rows."""
