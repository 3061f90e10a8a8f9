"""What the process tells operators: Prometheus metrics and logging (with redaction)."""
