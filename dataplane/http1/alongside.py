"""A response relayed while its request body is still being pumped: the shape every HTTP/1.1 exchange with a body
still arriving takes (``serve_http1``, the carriage's two sides)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio


async def relay_alongside(
    pump: Callable[[trio.CancelScope], Awaitable[None]],
    relay: Callable[[], Awaitable[None]],
    *,
    failures: tuple[type[Exception], ...],
    request_done: Callable[[], bool],
) -> tuple[Exception | None, bool]:
    """Run ``relay`` (the response) while ``pump`` (the request body) runs in a task given the exchange's cancel
    scope. Returns the relay's failure among ``failures`` (raised out of the nursery it would arrive as an exception
    group; the pump is cancelled) and whether the response ended before the body did (the pump is cancelled too:
    the upstream did not want the rest, and neither connection can carry another message)."""
    failed: Exception | None = None
    cut = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, nursery.cancel_scope)
        try:
            await relay()
        except failures as exc:
            failed = exc
            nursery.cancel_scope.cancel(reason="the response failed")
        if failed is None and not request_done():
            nursery.cancel_scope.cancel(reason="the response ended before the request body")
            cut = True
    return failed, cut
