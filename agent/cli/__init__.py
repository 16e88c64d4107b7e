"""The authoring commands: `seccomp-agent validate`, `render`, `convert`, `test` and `record`."""
