"""HTTP/2 on trio: one h2 connection wrapper (conn.py), header validation and flood defences (pure)."""
