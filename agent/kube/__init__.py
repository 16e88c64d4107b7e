"""The only code that talks to the Kubernetes API: kopf handlers, events, listings, status."""
