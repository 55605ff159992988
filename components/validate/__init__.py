"""The validate stage: schema, types, nulls and ranges; failing rows quarantined with reasons."""
