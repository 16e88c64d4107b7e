"""Scheduling gates: which pods wait for which profiles, and when they may go (pure)."""
