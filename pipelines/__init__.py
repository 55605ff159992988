"""driftpilot's pipelines, their compilation, the CLI and the local demo."""
