"""driftpilot's pipeline stages: one sub-package per stage, each a pure core and a KFP wrapper."""
