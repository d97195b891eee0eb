"""What HTTP/1.1 and HTTP/2 share: message heads, header fields, body framing, forwarding rewrites (pure)."""
