"""The vocabulary every program shares: profile keys, the on-disk layout, the CRDs' names and
models, and the node report's format. Pure data; imports nothing else of seccomp-sync."""
