"""Whether a failed attempt may be sent again: only when the route asks for it and sending it twice is safe."""

from __future__ import annotations

import enum
from typing import Final, assert_never

from policy.model import RetryCondition
from policy.services import RetryPlan

# RFC 9110 9.2.2: sending these twice has the effect of sending them once.
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class Failure(enum.Enum):
    """How an attempt failed."""

    CONNECT = "connect"
    """No connection to the endpoint (refused, unreachable, timed out, mesh TLS failed): nothing was sent."""
    REFUSED = "refused"
    """HTTP/2 REFUSED_STREAM or past a GOAWAY's last stream id: the server says it did not process it."""
    RESET = "reset"
    """The connection closed or was reset before any response byte."""
    PER_TRY_TIMEOUT = "per-try-timeout"
    """No response head within the route's per-try timeout."""
    STATUS = "status"
    """A response with a status the route lists."""
    GRPC = "grpc"
    """A gRPC response with a grpc-status the route lists."""


def retryable(
    plan: RetryPlan, failure: Failure, *, method: str, status: int = 0, grpc_status: int = -1, body_kept: bool
) -> bool:
    """Whether ``plan`` retries this failure. ``body_kept``: the whole request is still at hand to send again.
    Attempts are counted by the caller (``plan.max_attempts``)."""
    if not body_kept:
        return False
    idempotent = method in IDEMPOTENT_METHODS
    match failure:
        case Failure.CONNECT:
            return plan.on(RetryCondition.CONNECT_FAILURE)
        case Failure.REFUSED:
            return plan.on(RetryCondition.REFUSED_STREAM)
        case Failure.RESET:
            return idempotent and plan.on(RetryCondition.RESET)
        case Failure.PER_TRY_TIMEOUT:
            return idempotent and plan.on(RetryCondition.PER_TRY_TIMEOUT)
        case Failure.STATUS:
            return idempotent and status in plan.statuses
        case Failure.GRPC:
            # gRPC calls are POSTs: a listed grpc-status is the operator saying the call is safe to repeat.
            return grpc_status in plan.grpc_codes
        case _:
            assert_never(failure)
