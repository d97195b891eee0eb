import pytest

from dataplane.balance.retry_rule import IDEMPOTENT_METHODS, Failure, retryable
from policy.model import GrpcStatus, Retry, RetryCondition
from policy.services import RetryPlan

EVERYTHING = RetryPlan(
    Retry(
        conditions=tuple(RetryCondition),
        statuses=(502, 503),
        grpc_statuses=(GrpcStatus.UNAVAILABLE,),
    )
)
NOTHING = RetryPlan(Retry(conditions=()))


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH"])
@pytest.mark.parametrize("failure", [Failure.CONNECT, Failure.REFUSED])
def test_unprocessed_requests_are_retried_whatever_the_method(method: str, failure: Failure) -> None:
    assert retryable(EVERYTHING, failure, method=method, body_kept=True)
    assert not retryable(EVERYTHING, failure, method=method, body_kept=False)
    assert not retryable(NOTHING, failure, method=method, body_kept=True)


@pytest.mark.parametrize("failure", [Failure.RESET, Failure.PER_TRY_TIMEOUT])
def test_maybe_processed_requests_are_retried_only_when_idempotent(failure: Failure) -> None:
    for method in IDEMPOTENT_METHODS:
        assert retryable(EVERYTHING, failure, method=method, body_kept=True)
        assert not retryable(EVERYTHING, failure, method=method, body_kept=False)
        assert not retryable(NOTHING, failure, method=method, body_kept=True)
    assert not retryable(EVERYTHING, failure, method="POST", body_kept=True)
    assert not retryable(EVERYTHING, failure, method="get", body_kept=True)  # methods are case-sensitive


def test_listed_statuses_of_idempotent_requests() -> None:
    assert retryable(EVERYTHING, Failure.STATUS, method="GET", status=503, body_kept=True)
    assert not retryable(EVERYTHING, Failure.STATUS, method="GET", status=500, body_kept=True)
    assert not retryable(EVERYTHING, Failure.STATUS, method="POST", status=503, body_kept=True)
    assert not retryable(EVERYTHING, Failure.STATUS, method="GET", status=503, body_kept=False)


def test_listed_grpc_statuses_of_any_call() -> None:
    assert retryable(EVERYTHING, Failure.GRPC, method="POST", grpc_status=14, body_kept=True)
    assert not retryable(EVERYTHING, Failure.GRPC, method="POST", grpc_status=13, body_kept=True)
    assert not retryable(EVERYTHING, Failure.GRPC, method="POST", grpc_status=14, body_kept=False)
    assert not retryable(EVERYTHING, Failure.GRPC, method="POST", body_kept=True)  # no grpc-status at all


def test_the_default_conditions_are_honoured() -> None:
    default = RetryPlan(Retry())
    for failure in Failure:
        expected = default.on(
            {
                Failure.CONNECT: RetryCondition.CONNECT_FAILURE,
                Failure.REFUSED: RetryCondition.REFUSED_STREAM,
                Failure.RESET: RetryCondition.RESET,
                Failure.PER_TRY_TIMEOUT: RetryCondition.PER_TRY_TIMEOUT,
            }.get(failure, RetryCondition.CONNECT_FAILURE)
        ) and failure not in (Failure.STATUS, Failure.GRPC)
        assert retryable(default, failure, method="GET", status=503, grpc_status=14, body_kept=True) == expected
