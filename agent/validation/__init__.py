"""Validation of seccomp profiles: size, Docker keys, schema, semantics, names, a real compile."""
