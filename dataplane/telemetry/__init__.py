"""Metrics (the only place prometheus_client is imported) and logging."""
