"""Changing what an epoll set watches a descriptor for, where "nothing" means out of the set.

Both engines take a socket that needs nothing out of their level-triggered set rather than registering it with
an empty mask: EPOLLHUP and EPOLLERR cannot be masked, and a hung-up socket left in would wake them in a loop.
"""

from __future__ import annotations

import select


def change_interest(epoll: select.epoll, fd: int, old: int, new: int) -> None:
    """Watch ``fd`` for ``new`` instead of ``old`` (0: not in the set); callers skip the call when equal."""
    if old == 0:
        epoll.register(fd, new)
    elif new == 0:
        epoll.unregister(fd)
    else:
        epoll.modify(fd, new)
