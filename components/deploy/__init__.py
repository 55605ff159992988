"""The deploy stage: run the champion behind a model server (locally now, KServe later)."""
