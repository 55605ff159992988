"""The incidents and approvals page: ``driftpilot ui``, and the coordinator's Deployment in the chart."""
