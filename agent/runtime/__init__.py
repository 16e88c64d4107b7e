"""Process plumbing with no domain in it: the supervisor, cancellation-safe waiting, logs,
process metrics, and the HTTP server with its probes."""
