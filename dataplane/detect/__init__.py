"""Protocol detection: what a client speaks, decided from the first bytes it sends."""
