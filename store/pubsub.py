"""Publishing events on Redis channels.

On one Redis an event is a plain ``PUBLISH``. On a Redis Cluster it is a
sharded ``SPUBLISH`` (Redis 7): the message goes only to the node that owns
the channel's slot, where the subscribers' ``SSUBSCRIBE`` is, instead of
being broadcast over the cluster bus to every node.

With the multiplexed connection (``store/mux.py``, what the server uses)
nothing checks a pooled connection out: on one Redis a message is one
``PUBLISH`` and several are one script (``lua/publish_many.lua``: one
command, one reply); on a cluster each message goes to its channel's node,
all of them written in the same turn of the loop. Publishes share their
write with whatever else the process sends in that turn (rate-limit hits of
the next sends, access checks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from store.mux import Arg, MuxCluster, MuxRedis
from store.redis_client import RedisClient, lua_source

Payload = str | bytes


class Publisher:
    def __init__(self, client: RedisClient, *, sharded: bool, mux: MuxRedis | MuxCluster | None = None) -> None:
        self._client = client
        self._command = "SPUBLISH" if sharded else "PUBLISH"
        self._mux = mux if isinstance(mux, MuxRedis) and not sharded else None
        self._cluster = mux if isinstance(mux, MuxCluster) and sharded else None
        self._many_script = self._mux.register_script(lua_source("publish_many")) if self._mux is not None else ""

    async def publish(self, channel: str, payload: Payload) -> None:
        if self._mux is not None:
            await self._mux.execute(self._command, channel, payload)
        elif self._cluster is not None:
            await self._cluster.execute_keyed(channel, self._command, channel, payload)
        else:
            await self._client.execute_command(self._command, channel, payload)

    async def publish_many(self, messages: Sequence[tuple[str, Payload]]) -> None:
        """Several messages in one round trip (one per node on a cluster)."""
        if not messages:
            return
        if len(messages) == 1:
            await self.publish(*messages[0])
            return
        if self._mux is not None:
            args: list[Arg] = [part for message in messages for part in message]
            await self._mux.evalsha(self._many_script, [], args)
        elif self._cluster is not None:
            cluster, command = self._cluster, self._command
            await asyncio.gather(*(cluster.execute_keyed(ch, command, ch, payload) for ch, payload in messages))
        else:
            async with self._client.pipeline(transaction=False) as pipe:
                for channel, payload in messages:
                    pipe.execute_command(self._command, channel, payload)
                await pipe.execute()
