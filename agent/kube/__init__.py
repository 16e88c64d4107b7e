"""Kubernetes plumbing with no domain in it: the client and its timeouts, paged listing,
list-watch, leader election and Events. Imports nothing of seccomp-sync above it."""
