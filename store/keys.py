"""Redis key and channel names, built in one place.

Every name starts with the configured prefix, so several apps (or tests) can
share one Redis without seeing each other's data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def session(self, ble_token: str) -> str:
        return f"{self.prefix}session:{ble_token}"

    @property
    def active_sessions(self) -> str:
        """Sorted set: BLE token -> session expiry (ms), for an exact live count."""
        return f"{self.prefix}active_sessions"

    @property
    def pending_counters(self) -> str:
        """Hash of counter deltas not yet flushed to PostgreSQL."""
        return f"{self.prefix}counters:pending"

    @property
    def inflight_counters(self) -> str:
        """Hash of the counter batch being flushed right now."""
        return f"{self.prefix}counters:inflight"

    @property
    def hidden_prefix(self) -> str:
        return f"{self.prefix}hidden:"

    def hidden(self, user_id: str) -> str:
        """Set: the users this user must never be nudged with (blocks, either way)."""
        return f"{self.hidden_prefix}{user_id}"

    def presence(self, user_id: str) -> str:
        """Sorted set: process id -> when its claim that the user is online expires (ms)."""
        return f"{self.prefix}presence:{user_id}"

    @property
    def presence_deadlines(self) -> str:
        """Sorted set: user id -> when their last presence claim runs out (ms)."""
        return f"{self.prefix}presence-deadlines"

    @property
    def counter_batches(self) -> str:
        """Hash: ``epoch`` (random, per Redis dataset) and ``seq`` (last batch number)."""
        return f"{self.prefix}counters:batches"

    @property
    def token_channel_prefix(self) -> str:
        return f"{self.prefix}ev:token:"

    def token_channel(self, ble_token: str) -> str:
        return f"{self.token_channel_prefix}{ble_token}"

    @property
    def user_channel_prefix(self) -> str:
        return f"{self.prefix}ev:user:"

    def user_channel(self, user_id: str) -> str:
        return f"{self.user_channel_prefix}{user_id}"

    def tokens_valid_after(self, user_id: str) -> str:
        """Cached cut-off (unix ms) before which the user's access tokens are refused."""
        return f"{self.prefix}user:{user_id}:tokens_valid_after"

    def rate_limit(self, scope: str, subject: str, window: int) -> str:
        """Counter of one fixed rate-limit window (``subject`` is an IP, a user id or an email digest)."""
        return f"{self.prefix}rl:{scope}:{subject}:{window}"
