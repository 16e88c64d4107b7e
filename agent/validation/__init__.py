"""Validation of seccomp profiles: schema, semantics, syscall names, size and compile cost."""
