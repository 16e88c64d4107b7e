"""Kubernetes plumbing with no domain in it: the client and the one request timeout, the one
pager, list-watch, leader election, Events, and how a program that talks to the API starts.
Imports nothing of seccomp-sync above it."""
