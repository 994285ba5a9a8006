"""Redis key and channel names, built in one place.

Every name starts with the configured prefix, so several apps (or tests) can
share one Redis without seeing each other's data.

The ``{...}`` parts are Redis Cluster hash tags: keys a script touches
together must live in one slot. A session hash and its token's channel share
the token's slot; the counters and the live-session index share ``{stats}``;
a user's presence set shares a slot with one of ``PRESENCE_SHARDS`` deadline
sets. On a single Redis the braces are just characters.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Final

STATS_TAG: Final = "{stats}"
PRESENCE_SHARDS: Final = 16


def presence_shard(user_id: str) -> int:
    """Which presence deadline set a user belongs to (stable across processes)."""
    return zlib.crc32(user_id.encode()) % PRESENCE_SHARDS


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def session(self, ble_token: str) -> str:
        return f"{self.prefix}session:{{{ble_token}}}"

    @property
    def active_sessions(self) -> str:
        """Sorted set: BLE token -> session expiry (ms), for an exact live count."""
        return f"{self.prefix}{STATS_TAG}:active_sessions"

    @property
    def pending_counters(self) -> str:
        """Hash of counter deltas not yet flushed to PostgreSQL."""
        return f"{self.prefix}{STATS_TAG}:counters:pending"

    @property
    def inflight_counters(self) -> str:
        """Hash of the counter batch being flushed right now."""
        return f"{self.prefix}{STATS_TAG}:counters:inflight"

    @property
    def hidden_prefix(self) -> str:
        return f"{self.prefix}hidden:"

    def hidden(self, user_id: str) -> str:
        """Set: the users this user must never be nudged with (blocks, either way)."""
        return f"{self.hidden_prefix}{user_id}"

    def presence_prefix(self, shard: int) -> str:
        return f"{self.prefix}presence:{{presence-{shard}}}:"

    def presence(self, user_id: str) -> str:
        """Sorted set: process id -> when its claim that the user is online expires (ms)."""
        return f"{self.presence_prefix(presence_shard(user_id))}{user_id}"

    def presence_deadlines(self, shard: int) -> str:
        """Sorted set: user id -> when their last presence claim runs out (ms), for one shard of users."""
        return f"{self.presence_prefix(shard)}deadlines"

    @property
    def counter_batches(self) -> str:
        """Hash: ``epoch`` (random, per Redis dataset) and ``seq`` (last batch number)."""
        return f"{self.prefix}{STATS_TAG}:counters:batches"

    @property
    def token_channel_prefix(self) -> str:
        return f"{self.prefix}ev:token:"

    def token_channel(self, ble_token: str) -> str:
        """A BLE token's sockets listen here; it shares the session's cluster slot.

        A rotated session keeps publishing on its first token's channel, so its
        sockets keep listening without reconnecting.
        """
        return f"{self.token_channel_prefix}{{{ble_token}}}"

    @property
    def user_channel_prefix(self) -> str:
        return f"{self.prefix}ev:user:"

    def user_channel(self, user_id: str) -> str:
        return f"{self.user_channel_prefix}{user_id}"

    def tokens_valid_after(self, user_id: str) -> str:
        """Cached cut-off (unix ms) before which the user's access tokens are refused."""
        return f"{self.prefix}user:{user_id}:tokens_valid_after"

    def user_sessions(self, user_id: str) -> str:
        """Set: BLE tokens of the proximity sessions a user opened signed in (TTL: the newest session's)."""
        return f"{self.prefix}user:{user_id}:sessions"

    def rate_limit(self, scope: str, subject: str, window: int) -> str:
        """Counter of one fixed rate-limit window (``subject`` is an IP, a user id or an email digest)."""
        return f"{self.prefix}rl:{scope}:{subject}:{window}"

    def active_users(self, day: str) -> str:
        """HyperLogLog of the users active on a UTC day (YYYY-MM-DD); aggregate only."""
        return f"{self.prefix}{STATS_TAG}:dau:{day}"


_HASH_TAG = re.compile(r"\{([^}]*)\}")


def loggable_channel(channel: str) -> str:
    """A channel name fit for a log line: a token channel's hash tag (the BLE
    token itself) is cut to its first two characters, as the access log does."""
    return _HASH_TAG.sub(lambda m: "{" + m.group(1)[:2] + "…}", channel)
