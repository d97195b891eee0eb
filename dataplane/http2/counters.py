"""Counts the lead exports as metrics: one ``H2Counters`` shared by every connection of a listener."""

from __future__ import annotations

from collections import Counter


class H2Counters:
    """Plain integers, bumped on the connection's own task; read at scrape time."""

    __slots__ = ("flood_closed", "protocol_errors", "rejected", "streams")

    def __init__(self) -> None:
        self.flood_closed: Counter[str] = Counter()
        """Connections closed by a flood defence, by kind (``rapid_reset``, ``outbound_control``, ...)."""
        self.rejected: Counter[str] = Counter()
        """Requests or responses refused by validation, by reason (``bad_path``, ``bad_authority``, ...)."""
        self.protocol_errors = 0
        """Connections closed because the peer broke the protocol (h2 raised)."""
        self.streams = 0
        """Streams handed to the application (server side) or opened (client side)."""
