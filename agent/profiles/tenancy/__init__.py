"""Tenant guardrails: what a SeccompTenantPolicy allows the profiles and pods of a namespace."""
