"""Configuration: every setting declared once (params), the Go tool's backup.yaml (v1 and v2),
environment variables and ``--set``, the allowed range of every number, and what counts as a secret."""
