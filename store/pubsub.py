"""Publishing events on Redis channels.

On one Redis an event is a plain ``PUBLISH``. On a Redis Cluster it is a
sharded ``SPUBLISH`` (Redis 7): the message goes only to the node that owns
the channel's slot, where the subscribers' ``SSUBSCRIBE`` is, instead of
being broadcast over the cluster bus to every node.
"""

from __future__ import annotations

from collections.abc import Sequence

from store.redis_client import RedisClient

Payload = str | bytes


class Publisher:
    def __init__(self, client: RedisClient, *, sharded: bool) -> None:
        self._client = client
        self._command = "SPUBLISH" if sharded else "PUBLISH"

    async def publish(self, channel: str, payload: Payload) -> None:
        await self._client.execute_command(self._command, channel, payload)

    async def publish_many(self, messages: Sequence[tuple[str, Payload]]) -> None:
        """Several messages in one pipelined round trip (one per node on a cluster)."""
        if not messages:
            return
        if len(messages) == 1:
            await self.publish(*messages[0])
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for channel, payload in messages:
                pipe.execute_command(self._command, channel, payload)
            await pipe.execute()
