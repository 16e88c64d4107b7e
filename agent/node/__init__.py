"""The node agent (`seccomp-agent run`, a DaemonSet): profiles from the API to files on this
node, and this node's report."""
