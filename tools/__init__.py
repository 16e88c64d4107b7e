"""Build-time generators (the syscall table, the runtime-default allowlist): run by a person
when upstream data changes, never shipped in the package."""
