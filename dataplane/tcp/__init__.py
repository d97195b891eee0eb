"""Opaque TCP: relaying bytes both ways."""
