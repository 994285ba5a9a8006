"""Which driver exceptions mean "a backing service is unavailable".

Redis, PostgreSQL and the pub/sub broker each fail in their own way when
they are down, restarting or unreachable; every caller that answers "retry
shortly" (503 over HTTP, ``unavailable`` on a socket) matches this one tuple.
"""

from __future__ import annotations

from typing import Final

import asyncpg
from redis.exceptions import ClusterError, RedisClusterException, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class BrokerUnavailable(RuntimeError):
    """The pub/sub broker could not subscribe (no node serves the channel, or Redis is unreachable)."""


UNAVAILABLE_ERRORS: Final[tuple[type[BaseException], ...]] = (
    RedisConnectionError,
    RedisTimeoutError,
    # A Redis Cluster with a node down or its slots moving (CLUSTERDOWN,
    # TRYAGAIN, "slot not covered", or redirections that did not settle).
    ClusterError,
    TryAgainError,
    RedisClusterException,
    BrokerUnavailable,
    asyncpg.ConnectionFailureError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    # The server ended the session (pg_terminate_backend, shutdown, crash) ...
    asyncpg.exceptions.OperatorInterventionError,
    # ... which asyncpg may instead report on the connection's next use as
    # "cannot switch to state 15" (MagicStack/asyncpg#784, #1069).
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
    TimeoutError,
    OSError,
)
