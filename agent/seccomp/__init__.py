"""libseccomp: the syscall vocabulary, the compile worker process, its client and cost model,
runc's rules, and the supervisor behind `seccomp-agent test` and `record`."""
