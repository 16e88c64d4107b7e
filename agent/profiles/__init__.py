"""Profile logic shared by every program: composition on bases, rendering, built-in bases,
converters and tenant policies. Pure: no Kubernetes, no disk."""
