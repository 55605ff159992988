"""The decide stage: a deterministic policy that turns drift and performance into an action."""
