from __future__ import annotations

import pytest

from dataplane.upstream.idle_set import IdleSet


def test_take_hands_out_the_most_recently_used_connection_of_its_key() -> None:
    idle: IdleSet[str, str] = IdleSet(max_per_key=4, idle_timeout=10)
    assert idle.put("a", "a1", now=0) == []
    assert idle.put("a", "a2", now=1) == []
    assert idle.put("b", "b1", now=2) == []
    assert (len(idle), idle.count("a")) == (3, 2)
    assert idle.take("a", now=3) == ("a2", [])
    assert idle.take("a", now=3) == ("a1", [])
    assert idle.take("a", now=3) == (None, [])
    assert idle.take("c", now=3) == (None, [])
    assert len(idle) == 1 and idle
    assert idle.take("b", now=3) == ("b1", [])
    assert not idle


def test_the_oldest_beyond_the_limit_per_key_are_dropped() -> None:
    idle: IdleSet[str, str] = IdleSet(max_per_key=2, idle_timeout=10)
    idle.put("a", "a1", now=0)
    idle.put("a", "a2", now=1)
    assert idle.put("a", "a3", now=2) == ["a1"]
    assert idle.put("b", "b1", now=2) == []  # the limit is per key
    assert idle.count("a") == 2
    nothing: IdleSet[str, str] = IdleSet(max_per_key=0, idle_timeout=10)
    assert nothing.put("a", "a1", now=0) == ["a1"] and len(nothing) == 0 and not nothing


def test_expired_connections_are_returned_for_closing_never_handed_out() -> None:
    idle: IdleSet[str, str] = IdleSet(max_per_key=8, idle_timeout=10)
    idle.put("a", "old", now=0)
    idle.put("a", "new", now=5)
    assert idle.next_expiry() == 10
    assert idle.take("a", now=12) == ("new", ["old"])
    idle.put("a", "x", now=20)
    idle.put("b", "y", now=21)
    assert idle.next_expiry() == 30
    assert idle.expire(now=30.5) == ["x"]
    assert idle.next_expiry() == 31
    assert idle.expire(now=40) == ["y"]
    assert idle.next_expiry() is None and len(idle) == 0


def test_remove_and_clear() -> None:
    idle: IdleSet[str, str] = IdleSet(max_per_key=8, idle_timeout=10)
    idle.put("a", "a1", now=0)
    idle.put("a", "a2", now=0)
    assert idle.remove("a", "a1") and not idle.remove("a", "a1") and not idle.remove("z", "a1")
    idle.put("b", "b1", now=0)
    assert sorted(idle.clear()) == ["a2", "b1"]
    assert len(idle) == 0


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_per_key"):
        IdleSet(max_per_key=-1, idle_timeout=1)
