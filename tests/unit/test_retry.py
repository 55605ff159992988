"""Retries of calls to remote services, and what the store counts as worth another attempt."""

import pytest
from distributed.protocol.pickle import dumps, loads

from components.common.errors import StoreError
from components.common.retry import RetryPolicy, retrying
from components.common.store import _transient

QUICK = RetryPolicy(attempts=3, initial_s=0.01, max_wait_s=0.01)


def test_a_call_that_keeps_failing_ends_in_one_error_naming_it_its_attempts_and_its_cause() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise OSError("AWS Error NETWORK_CONNECTION during PutObject operation: curlCode: 7")

    with pytest.raises(StoreError, match=r"could not write k after 3 attempts: AWS Error NETWORK_CONNECTION") as caught:
        retrying(down, what="write k", error=StoreError, transient=lambda exc: True, policy=QUICK)
    assert len(calls) == 3
    # A Dask worker sends the error back pickled: it must not drag tenacity's state along.
    assert str(loads(dumps(caught.value))) == str(caught.value)
    assert isinstance(caught.value, OSError)  # what the monitor's flush keeps its rows on


def test_a_failure_that_is_not_transient_is_raised_at_once() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise PermissionError("AWS Error ACCESS_DENIED")

    with pytest.raises(PermissionError):
        retrying(refused, what="write k", error=StoreError, transient=_transient, policy=QUICK)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (OSError("AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 7, Could not connect"), True),
        (OSError("AWS Error SLOW_DOWN during PutObject operation: Please reduce your request rate."), True),
        (OSError("AWS Error SERVICE_UNAVAILABLE during ListObjectsV2 operation"), True),
        (FileNotFoundError("Path does not exist 'lake/events/batch=1'"), False),
        (OSError("AWS Error ACCESS_DENIED during PutObject operation: Access Denied."), False),
        (ValueError("NETWORK_CONNECTION"), False),
    ],
)
def test_the_store_retries_an_object_store_that_did_not_answer_not_one_that_said_no(
    error: BaseException, transient: bool
) -> None:
    assert _transient(error) is transient
