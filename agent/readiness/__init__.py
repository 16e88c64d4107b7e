"""Readiness, as pure functions: what a node reports, and what a profile's status becomes."""
