"""Sockets: listeners, original destinations, upstream connects, the redirect-loop guard."""
