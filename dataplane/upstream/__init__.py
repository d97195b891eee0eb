"""Upstream connections the proxy keeps for reuse."""
