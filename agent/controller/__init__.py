"""The controller (`seccomp-agent controller`, elected): profile status from the node reports,
and the release of pods held at the scheduling gate."""
