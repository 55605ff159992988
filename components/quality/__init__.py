"""The ingestion-anomaly agent: a data-quality verdict on each batch, before any drift test."""
