"""as_api_error: the one exception -> error mapping of HTTP and the sockets."""

from __future__ import annotations

import asyncpg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from protocol.codes import ErrorCode
from proximity_server.features.errors import NotFound, ServiceUnavailable, as_api_error
from store.errors import BrokerUnavailable


def test_an_api_error_is_returned_as_is() -> None:
    error = NotFound("no such photo")
    assert as_api_error(error) is error


@pytest.mark.parametrize(
    "exc",
    [RedisConnectionError("down"), asyncpg.CannotConnectNowError("starting"), BrokerUnavailable("no node"), OSError()],
)
def test_a_backing_service_that_is_down_is_503_unavailable(exc: BaseException) -> None:
    error = as_api_error(exc)
    assert isinstance(error, ServiceUnavailable)
    assert (error.status, error.code, error.message) == (
        503,
        ErrorCode.UNAVAILABLE,
        "a backing service is unavailable; retry shortly",
    )


def test_anything_else_is_left_to_the_caller() -> None:
    assert as_api_error(KeyError("bug")) is None
