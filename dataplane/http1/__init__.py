"""HTTP/1.1: a strict incremental parser (pure) and the framing rules that keep requests from being smuggled."""
