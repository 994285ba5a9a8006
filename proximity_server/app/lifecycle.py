"""Resources with a lifetime, as ``cleanup_ctx`` generators.

They start in this order and unwind in reverse: metrics registry, Redis
client, PostgreSQL pool (migrated), stores and services, accounts
(password-hash threads, JWT key), the pub/sub listener, the counter flusher
and the session sweeper. On shutdown, sockets are closed with 1001 first
(``on_shutdown``); the flusher then writes the counters one last time.

This is the composition root: objects are wired here by constructor
arguments or by their own ``register_*`` methods (the broker learns the hub's
delivery once the hub exists), never by setting another object's attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from redis.asyncio import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from config.settings import photos_dir
from protocol.codes import CloseCode
from proximity_server.app import state as keys
from proximity_server.features.accounts import AccountService
from proximity_server.features.admin import AdminService
from proximity_server.features.assessment import AssessmentService
from proximity_server.features.card_scores import CardScorer
from proximity_server.features.conversations import ConversationService
from proximity_server.features.crossed_paths import CrossedPaths
from proximity_server.features.discover import DiscoverService
from proximity_server.features.erasure import CleanupWorker, ErasureService
from proximity_server.features.export import ExportService
from proximity_server.features.likes import LikeService
from proximity_server.features.moderation import ModerationService
from proximity_server.features.passwords import PROFILES, Passwords
from proximity_server.features.photo_urls import PhotoUrls, photo_url_key
from proximity_server.features.photos import IMAGE_WORKERS, PhotoService
from proximity_server.features.profiles import ProfileService
from proximity_server.features.proximity import ProximityService, SessionSockets
from proximity_server.features.rate_limit import RateLimiter
from proximity_server.features.stats import ActiveUsers, CounterFlusher
from proximity_server.features.suggestions import JOB_LOCK_TTL_MS, SuggestionJob, SuggestionService
from proximity_server.features.taxonomy import OTHER_CATEGORY
from proximity_server.features.tokens import AccessTokens, load_or_create_secret
from proximity_server.realtime.broker import create_broker
from proximity_server.realtime.fanout import Fanout
from proximity_server.realtime.hub import Hub
from proximity_server.realtime.user_socket import Realtime
from proximity_server.runtime.metrics import Metrics
from store import db, redis_client
from store.accounts import AccountStore
from store.admin import AdminStore, BanSignals
from store.assessment import AssessmentStore
from store.compatibility import CompatibilityStore
from store.conversations import ConversationStore
from store.crossed_paths import CrossedPathsStore
from store.discover import DiscoverStore
from store.erasure import CleanupJobs, ErasureStore, UserKeys
from store.events import EVENT_RETENTION_DAYS, EventStore
from store.export import ExportStore
from store.hidden import HiddenPairs
from store.job_lock import JobLock
from store.likes import LikeStore
from store.mux import MuxCluster, MuxRedis
from store.photos import LocalPhotoStore, PhotoRecords, PhotoStore, open_s3_store
from store.presence import PresenceStore
from store.profiles import ProfileStore
from store.proximity import ClusterProximityStore, ProximityStore
from store.pubsub import Publisher
from store.rate_limit import RateLimitStore
from store.stats import StatsStore
from store.suggestions import SuggestionStore

log = logging.getLogger(__name__)


PRESENCE_REFRESHES_PER_TTL = 3
EVENT_PRUNE_INTERVAL_SECONDS = 3600


def process_id() -> str:
    """Names this process in presence claims: unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _background(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.create_task(coro, name=name)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """One Redis (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER_URL)."""
    settings = app[keys.SETTINGS]
    assert settings.redis_url, "REDIS_URL is not configured"
    client = redis_client.create_client(settings.redis_url, cluster=settings.redis_cluster)
    mux = MuxCluster(settings.redis_url) if settings.redis_cluster else MuxRedis(settings.redis_url)
    app[keys.REDIS] = client
    app[keys.REDIS_MUX] = mux
    app[keys.PUBLISHER] = Publisher(client, sharded=settings.redis_cluster, mux=mux)
    if isinstance(client, RedisCluster):
        # Learn the slot map now rather than under the first burst of requests.
        # A cluster that is down is not fatal here: /health reports it, and
        # the client retries on first use.
        try:
            await client.initialize()
        except (RedisError, RedisClusterException, OSError) as exc:  # no node answers: RedisClusterException
            log.warning("Redis Cluster not reachable at start", extra={"error": repr(exc)})
    yield
    await mux.aclose()
    await client.aclose()


async def postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    assert settings.database_url, "DATABASE_URL is not configured"
    pool = await db.create_pool(
        settings.database_url, settings.db_schema, application_name=settings.db_application_name
    )
    try:
        await db.migrate(pool, settings.db_schema)
    except BaseException:
        await pool.close()
        raise
    app[keys.PG_POOL] = pool
    yield
    await pool.close()


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    client = app[keys.REDIS]
    redis_keys = app[keys.REDIS_KEYS]
    mux = app[keys.REDIS_MUX]
    crossed = CrossedPaths(CrossedPathsStore(app[keys.PG_POOL]))
    app[keys.CROSSED_PATHS] = crossed
    store = (
        ClusterProximityStore(client, mux, redis_keys, OTHER_CATEGORY)
        if isinstance(mux, MuxCluster)
        else ProximityStore(client, mux, redis_keys, OTHER_CATEGORY)
    )
    app[keys.PROXIMITY] = ProximityService(
        store,
        app[keys.TAXONOMY],
        settings.session_ttl_seconds,
        rotation_grace_seconds=settings.token_rotation_grace_seconds,
        decision_listeners=(app[keys.METRICS].nudges.observe, crossed.observe),
    )
    app[keys.STATS_STORE] = StatsStore(client, app[keys.PG_POOL], redis_keys)

    # The hub subscribes through the broker, and the broker hands what it
    # hears to the hub: the broker comes first, the hub is built on it, and
    # the hub's delivery is registered with the broker (before it runs).
    broker = create_broker(client, url=settings.redis_url or "", control_channel=f"{settings.redis_prefix}ev:control")
    hub = Hub(broker.subscribe, broker.unsubscribe, fanout=Fanout())
    broker.register_event_handler(hub.deliver)
    app[keys.BROKER] = broker
    app[keys.HUB] = hub
    app[keys.SESSION_SOCKETS] = SessionSockets(store, hub, redis_keys)
    yield


async def accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Password hashing threads, the JWT key, and the account service."""
    settings = app[keys.SETTINGS]
    secret = load_or_create_secret(settings.jwt_secret, settings.data_dir)
    tokens = AccessTokens(secret, settings.jwt_issuer, settings.jwt_audience)
    limiter = RateLimiter(
        RateLimitStore(app[keys.REDIS]),
        app[keys.REDIS_KEYS],
        settings.rate_limit_auth_per_minute,
        settings.rate_limit_api_per_minute,
    )
    executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="password-hash")
    passwords = Passwords(PROFILES[settings.password_hash_profile], executor)
    store = AccountStore(
        app[keys.PG_POOL], app[keys.REDIS], app[keys.REDIS_MUX], app[keys.REDIS_KEYS], app[keys.PUBLISHER]
    )
    app[keys.ACCESS_TOKENS] = tokens
    app[keys.RATE_LIMITER] = limiter
    active = ActiveUsers()
    app[keys.ACTIVE_USERS] = active
    app[keys.ACCOUNTS] = AccountService(
        store, passwords, tokens, limiter, admin_emails=settings.admin_emails, on_active=active.seen
    )
    yield
    executor.shutdown(wait=True, cancel_futures=True)


async def profiles_ctx(app: web.Application) -> AsyncIterator[None]:
    """Profiles, discovery and photos: the photo store (an S3 client, or a
    local directory) and the threads that decode images off the loop."""
    settings = app[keys.SETTINGS]
    pool = app[keys.PG_POOL]
    async with contextlib.AsyncExitStack() as stack:
        store: PhotoStore
        if settings.s3_endpoint_url and settings.s3_bucket:
            store = await open_s3_store(
                stack,
                endpoint_url=settings.s3_endpoint_url,
                bucket=settings.s3_bucket,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id,
                secret_access_key=settings.s3_secret_access_key,
            )
        else:
            store = LocalPhotoStore(photos_dir(settings))
        executor = ThreadPoolExecutor(max_workers=IMAGE_WORKERS, thread_name_prefix="images")
        stack.callback(executor.shutdown, wait=True, cancel_futures=True)
        records = PhotoRecords(pool)
        urls = PhotoUrls(
            photo_url_key(settings.photo_url_secret, load_or_create_secret(settings.jwt_secret, settings.data_dir)),
            settings.photo_url_ttl_seconds,
        )
        scorer = CardScorer(CompatibilityStore(pool), app[keys.TAXONOMY])
        profiles = ProfileService(ProfileStore(pool), records, urls, scorer)
        app[keys.PHOTO_STORE] = store
        app[keys.PROFILES] = profiles
        app[keys.DISCOVER] = DiscoverService(profiles, DiscoverStore(pool), records, scorer)
        app[keys.PHOTOS] = PhotoService(records, store, executor, urls)
        yield


async def chat_ctx(app: web.Application) -> AsyncIterator[None]:
    """Likes, matches, conversations and the per-user event log."""
    pool = app[keys.PG_POOL]
    events = EventStore(pool, app[keys.PUBLISHER], app[keys.REDIS_KEYS])
    app[keys.EVENTS] = events
    heartbeat = app[keys.SETTINGS].ws_heartbeat_seconds
    presence = PresenceStore(app[keys.REDIS], app[keys.REDIS_KEYS], process_id(), claim_ttl_seconds=heartbeat)
    app[keys.PRESENCE] = presence
    hidden = HiddenPairs(app[keys.REDIS], app[keys.REDIS_KEYS])
    urls = app[keys.PHOTOS].urls
    app[keys.LIKES] = LikeService(LikeStore(pool), events, urls, hidden, presence)
    app[keys.CONVERSATIONS] = ConversationService(
        ConversationStore(pool),
        events,
        RateLimitStore(app[keys.REDIS], app[keys.REDIS_MUX]),
        app[keys.REDIS_KEYS],
        app[keys.SETTINGS].rate_limit_messages_per_minute,
        urls,
    )

    async def prune_forever() -> None:
        """Drop events past their retention (every process may; deleting is idempotent)."""
        while True:
            await asyncio.sleep(EVENT_PRUNE_INTERVAL_SECONDS)
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=EVENT_RETENTION_DAYS)
            try:
                pruned = await events.prune(cutoff)
                if pruned:
                    log.info("pruned old events", extra={"events": pruned})
            except Exception as exc:
                log.warning("event pruning failed", extra={"error": repr(exc)})

    task = _background(prune_forever(), "event-pruner")
    yield
    await _cancel(task)


async def data_rights_ctx(app: web.Application) -> AsyncIterator[None]:
    """Erasure and export, and the background worker of their cleanup outbox
    (object deletions retried with backoff, expired exports)."""
    pool = app[keys.PG_POOL]
    user_keys = UserKeys(app[keys.REDIS], app[keys.REDIS_KEYS])
    worker = CleanupWorker(CleanupJobs(pool), app[keys.PHOTO_STORE], user_keys, app[keys.REDIS_KEYS])
    app[keys.CLEANUP] = worker
    app[keys.ERASURE] = ErasureService(
        ErasureStore(pool), user_keys, app[keys.REDIS_KEYS], app[keys.ACCOUNTS], app[keys.EVENTS], worker
    )
    exports = ExportService(ExportStore(pool), app[keys.PHOTO_STORE], app[keys.ACCOUNTS])
    app[keys.EXPORT] = exports
    task = _background(worker.run(), "cleanup-outbox")
    yield
    await _cancel(task)
    await exports.close()


async def realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    """User sockets: presence claims refreshed while this process holds them."""
    settings = app[keys.SETTINGS]
    heartbeat = settings.ws_heartbeat_seconds
    presence = app[keys.PRESENCE]
    realtime = Realtime(
        hub=app[keys.HUB],
        keys=app[keys.REDIS_KEYS],
        accounts=app[keys.ACCOUNTS],
        conversations=app[keys.CONVERSATIONS],
        members=app[keys.CONVERSATIONS].store,  # look-ups: the chat feature's own stores
        likes=app[keys.LIKES].store,
        events=app[keys.EVENTS],
        presence=presence,
        publisher=app[keys.PUBLISHER],
    )
    app[keys.REALTIME] = realtime
    hub = app[keys.HUB]
    hub.route(app[keys.REDIS_KEYS].user_channel_prefix, realtime.fanout)
    hub.on_close(realtime.closed)
    # Events published while the pub/sub connection was down: sockets catch up from the log.
    app[keys.BROKER].add_resubscribe_listener(realtime.resubscribed)

    async def refresh_forever() -> None:
        while True:
            await asyncio.sleep(heartbeat / PRESENCE_REFRESHES_PER_TTL)
            try:
                await realtime.refresh_presence()
            except Exception as exc:
                log.warning("presence refresh failed", extra={"error": repr(exc)})

    task = _background(refresh_forever(), "presence-refresh")
    yield
    await _cancel(task)
    await realtime.close()


async def pubsub_ctx(app: web.Application) -> AsyncIterator[None]:
    task = _background(app[keys.BROKER].run(), "pubsub-listener")
    yield
    await _cancel(task)


async def sweeper_ctx(app: web.Application) -> AsyncIterator[None]:
    task = _background(app[keys.SESSION_SOCKETS].run(), "session-sweeper")
    yield
    await _cancel(task)


async def flusher_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    flusher = CounterFlusher(
        app[keys.STATS_STORE],
        settings.stats_flush_interval,
        app[keys.ACTIVE_USERS],
        lambda: app[keys.REALTIME].local_users() if keys.REALTIME in app else [],
    )
    app[keys.FLUSHER] = flusher
    task = _background(flusher.run(), "counter-flusher")
    yield
    await _cancel(task)
    try:
        moved = await flusher.flush_once()
        log.info("final counter flush", extra={"fields": moved})
    except Exception:
        log.exception("final counter flush failed; counters stay in Redis for the next start")


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Per-app Prometheus registry; its gauges read the live objects at scrape time."""
    app[keys.METRICS] = Metrics(
        {
            "hub": lambda: app.get(keys.HUB),
            "broker": lambda: app.get(keys.BROKER),
            "flusher": lambda: app.get(keys.FLUSHER),
            "pg_pool": lambda: app.get(keys.PG_POOL),
            "redis": lambda: app.get(keys.REDIS),
        }
    )
    yield


async def close_sockets(app: web.Application) -> None:
    hub = app.get(keys.HUB)
    if hub is not None:
        await hub.close_all(CloseCode.GOING_AWAY)


async def admin_ctx(app: web.Application) -> AsyncIterator[None]:
    """The admin console: statistics over time, moderation and bans."""
    store = AdminStore(app[keys.PG_POOL])
    app[keys.ADMIN] = AdminService(store, app[keys.SETTINGS].stats_min_count)
    signals = BanSignals(app[keys.REDIS], app[keys.REDIS_KEYS], app[keys.PUBLISHER])
    app[keys.MODERATION] = ModerationService(store, signals, app[keys.PHOTOS].urls)
    yield


async def compatibility_ctx(app: web.Application) -> AsyncIterator[None]:
    """The assessment, daily suggestions (and their job, one process at a
    time under a Redis lock), and the crossed-paths flusher."""
    settings = app[keys.SETTINGS]
    pool = app[keys.PG_POOL]
    app[keys.ASSESSMENT] = AssessmentService(AssessmentStore(pool))
    service = SuggestionService(
        app[keys.PROFILES],
        SuggestionStore(pool),
        app[keys.TAXONOMY],
        settings.suggestions_per_day,
        settings.suggestions_max_exposure,
    )
    app[keys.SUGGESTIONS] = service
    job = SuggestionJob(service, JobLock(app[keys.REDIS], settings.redis_prefix, "suggestions", JOB_LOCK_TTL_MS))
    app[keys.SUGGESTION_JOB] = job
    crossed = app[keys.CROSSED_PATHS]
    tasks = [_background(crossed.run(), "crossed-paths-flusher"), _background(job.run(), "suggestion-job")]
    yield
    for task in tasks:
        await _cancel(task)
    try:
        await crossed.flush_once()
    except Exception:
        log.exception("final crossed paths flush failed")


CLEANUP_CONTEXTS = (
    metrics_ctx,
    redis_ctx,
    postgres_ctx,
    profiles_ctx,
    services_ctx,
    accounts_ctx,
    chat_ctx,
    data_rights_ctx,
    realtime_ctx,
    pubsub_ctx,
    flusher_ctx,
    sweeper_ctx,
    admin_ctx,
    compatibility_ctx,
)
