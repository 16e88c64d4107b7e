"""`seccomp-agent controller`: status aggregation and scheduling gates, apart from the nodes."""
