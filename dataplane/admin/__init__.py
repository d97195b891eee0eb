"""The admin endpoint (127.0.0.1:15000): /live /ready /metrics /connections /config."""
