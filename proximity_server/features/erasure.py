"""Erasure (``DELETE /me``): the account and everything of it goes, at once.

Order, and why:

1. the current password is checked again (an access token alone is not
   enough to erase an account);
2. one PostgreSQL transaction (``store.erasure``) makes the account a
   tombstone and removes or pseudonymises the rest, and queues what must
   follow in ``cleanup_jobs`` (object deletions, a later Redis sweep);
3. after COMMIT: open sockets hear "logout" (they close with 4401), the
   other people get their ``unmatch`` events, the user's Redis keys go
   (proximity sessions, presence, hidden sets, token cache, rate counters),
   and the photo objects are deleted right away when storage answers.

Anything of step 3 that fails is not lost: the outbox is worked by
:class:`CleanupWorker` (a background task of the composition root) with
exponential backoff until it succeeds; it also expires data exports.
Nothing here logs an id, an email, a name or a message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable
from typing import Final

from proximity_server.features.accounts import AccountService
from proximity_server.features.conversations import MESSAGES_SCOPE
from proximity_server.features.events import publish_committed
from proximity_server.features.rate_limit import API_USER_SCOPE, REAUTH_USER_SCOPE, WINDOW_MS
from store.erasure import DELETE_OBJECT, PURGE_USER_KEYS, CleanupJob, CleanupJobs, ErasureStore, UserKeys
from store.events import EventStore
from store.photos import PhotoStore
from store.redis_keys import Keys

log = logging.getLogger(__name__)

# The last Redis sweep waits until the user's sockets have surely closed and
# released their presence claims.
KEYS_PURGE_DELAY_SECONDS: Final = 60.0
CLEANUP_INTERVAL_SECONDS: Final = 5.0
CLEANUP_BATCH: Final = 100
CLEANUP_LEASE_SECONDS: Final = 300.0
RETRY_BASE_SECONDS: Final = 5.0
RETRY_MAX_SECONDS: Final = 3600.0
USER_SCOPES: Final = (API_USER_SCOPE, REAUTH_USER_SCOPE, MESSAGES_SCOPE)


def retry_delay(attempts: int) -> float:
    """Backoff after the ``attempts``-th failure: 5 s, 10 s, 20 s, … up to an hour."""
    return float(min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** min(attempts, 20)))


def rate_limit_keys(keys: Keys, user_id: str, now_ms: int) -> list[str]:
    """The user's rate counters of this window and the one before (older ones have expired)."""
    window = now_ms // WINDOW_MS
    return [keys.rate_limit(scope, user_id, w) for scope in USER_SCOPES for w in (window - 1, window)]


class ErasureService:
    def __init__(
        self,
        store: ErasureStore,
        user_keys: UserKeys,
        keys: Keys,
        accounts: AccountService,
        events: EventStore,
        worker: CleanupWorker,
    ) -> None:
        self._store = store
        self._user_keys = user_keys
        self._keys = keys
        self._accounts = accounts
        self._events = events
        self._worker = worker

    async def erase(self, user_id: str, password: str) -> None:
        """Erase the account (401 on a wrong password or an erased account)."""
        await self._accounts.reauthenticate(user_id, password)
        now = time.time()
        purge_at = dt.datetime.fromtimestamp(now + KEYS_PURGE_DELAY_SECONDS, dt.UTC)
        erased = await self._store.erase_in_one_transaction(user_id, purge_at)
        if erased is None:  # erased by a concurrent request: that one finishes the job
            return
        # Committed. The rest is retried by the outbox if it fails here.
        await self._best_effort(self._accounts.announce_logout(user_id, now), "logout publish")
        await publish_committed(self._events, erased.events)
        await self._best_effort(
            self._user_keys.purge(
                user_id,
                block_partners=erased.block_partners,
                extra_keys=rate_limit_keys(self._keys, user_id, int(now * 1000)),
            ),
            "redis purge",
        )
        await self._best_effort(self._worker.run_once(), "object deletion")

    @staticmethod
    async def _best_effort(step: Awaitable[object], what: str) -> None:
        try:
            await step
        except Exception as exc:
            log.warning(
                "erasure follow-up failed; the cleanup outbox retries it",
                extra={"step": what, "error": type(exc).__name__},
            )


class CleanupWorker:
    """Works the ``cleanup_jobs`` outbox: deletes stored objects and sweeps
    an erased user's Redis keys, retrying each failure with backoff; also
    expires data exports (their files join the outbox)."""

    def __init__(self, jobs: CleanupJobs, photos: PhotoStore, user_keys: UserKeys, keys: Keys) -> None:
        self._jobs = jobs
        self._photos = photos
        self._user_keys = user_keys
        self._keys = keys

    async def run(self, interval: float = CLEANUP_INTERVAL_SECONDS) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run_once()
            except Exception as exc:
                log.warning("cleanup round failed; retrying", extra={"error": type(exc).__name__})

    async def run_once(self, horizon_seconds: float = 0.0) -> int:
        """One round: expire exports, then do the due jobs. Returns how many succeeded."""
        await self._jobs.expire_exports()
        done = 0
        while jobs := await self._jobs.claim_due(CLEANUP_BATCH, CLEANUP_LEASE_SECONDS, horizon_seconds):
            for job in jobs:
                if await self._do(job):
                    done += 1
            if len(jobs) < CLEANUP_BATCH:
                break
        return done

    async def _do(self, job: CleanupJob) -> bool:
        try:
            if job.kind == DELETE_OBJECT:
                await self._photos.delete(job.target)
            elif job.kind == PURGE_USER_KEYS:
                now_ms = int(time.time() * 1000)
                await self._user_keys.purge(job.target, extra_keys=rate_limit_keys(self._keys, job.target, now_ms))
        except Exception as exc:
            delay = retry_delay(job.attempts)
            log.warning(
                "cleanup job failed; will retry",
                extra={"kind": job.kind, "attempts": job.attempts + 1, "retry_in": delay, "error": type(exc).__name__},
            )
            await self._jobs.failed(job.id, delay, type(exc).__name__)
            return False
        await self._jobs.done(job.id)
        return True
