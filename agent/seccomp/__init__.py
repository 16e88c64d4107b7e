"""libseccomp: the syscall vocabulary, the compile worker process and its client, and the
supervisor behind `seccomp-agent test` and `record`."""
