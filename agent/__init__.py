"""seccomp-sync: validated seccomp profiles on every Kubernetes node."""

__version__ = "0.1.0"
