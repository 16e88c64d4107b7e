"""`seccomp-agent test` and `record`: a command run under a profile, its syscalls observed."""
