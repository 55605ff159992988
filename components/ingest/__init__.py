"""The ingest stage: GDELT export files to one raw table, unreadable input quarantined."""
