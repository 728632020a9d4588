"""Recorded-data access: contract checks (schema) and streaming sources (recorded)."""
