"""Validation of seccomp profiles: schema, semantics, syscall names and a real compile."""
