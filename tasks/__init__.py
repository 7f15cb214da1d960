"""Prefect tasks: thin wrappers that call ``elm`` and return artifact versions (never data)."""
