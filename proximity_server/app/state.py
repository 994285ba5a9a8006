"""Typed application state keys (``web.AppKey``): nothing lives in globals.

The types are imported for the type checker only, so importing this module
imports nothing of the server: any module may use the keys without an
import cycle. The composition root that fills them is ``lifecycle.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import asyncpg

    from config.settings import Settings
    from proximity_server.app.webapp import WebFiles
    from proximity_server.features.accounts import AccountService
    from proximity_server.features.admin import AdminService
    from proximity_server.features.assessment import AssessmentService
    from proximity_server.features.conversations import ConversationService
    from proximity_server.features.crossed_paths import CrossedPaths
    from proximity_server.features.discover import DiscoverService
    from proximity_server.features.erasure import CleanupWorker, ErasureService
    from proximity_server.features.export import ExportService
    from proximity_server.features.likes import LikeService
    from proximity_server.features.moderation import ModerationService
    from proximity_server.features.photos import PhotoService
    from proximity_server.features.profiles import ProfileService
    from proximity_server.features.proximity import ProximityService, SessionSockets
    from proximity_server.features.rate_limit import RateLimiter, TrustedProxies
    from proximity_server.features.stats import ActiveUsers, CounterFlusher
    from proximity_server.features.suggestions import SuggestionJob, SuggestionService
    from proximity_server.features.taxonomy import Taxonomy
    from proximity_server.features.tokens import AccessTokens
    from proximity_server.realtime.broker import Broker
    from proximity_server.realtime.hub import Hub
    from proximity_server.realtime.user_socket import Realtime
    from proximity_server.runtime.metrics import Metrics
    from store.events import EventStore
    from store.mux import MuxCluster, MuxRedis
    from store.photos import PhotoStore
    from store.presence import PresenceStore
    from store.pubsub import Publisher
    from store.redis_client import RedisClient
    from store.redis_keys import Keys
    from store.stats import StatsStore

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
TAXONOMY: web.AppKey[Taxonomy] = web.AppKey("taxonomy")
REDIS_KEYS: web.AppKey[Keys] = web.AppKey("redis_keys")
REDIS: web.AppKey[RedisClient] = web.AppKey("redis")
REDIS_MUX: web.AppKey[MuxRedis | MuxCluster] = web.AppKey("redis_mux")
PUBLISHER: web.AppKey[Publisher] = web.AppKey("publisher")
PG_POOL: web.AppKey[asyncpg.Pool] = web.AppKey("pg_pool")
HUB: web.AppKey[Hub] = web.AppKey("hub")
BROKER: web.AppKey[Broker] = web.AppKey("broker")
PROXIMITY: web.AppKey[ProximityService] = web.AppKey("proximity")
SESSION_SOCKETS: web.AppKey[SessionSockets] = web.AppKey("session_sockets")
STATS_STORE: web.AppKey[StatsStore] = web.AppKey("stats_store")
FLUSHER: web.AppKey[CounterFlusher] = web.AppKey("flusher")
ACCESS_TOKENS: web.AppKey[AccessTokens] = web.AppKey("access_tokens")
ACCOUNTS: web.AppKey[AccountService] = web.AppKey("accounts")
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")
TRUSTED_PROXIES: web.AppKey[TrustedProxies] = web.AppKey("trusted_proxies")
PROFILES: web.AppKey[ProfileService] = web.AppKey("profiles")
DISCOVER: web.AppKey[DiscoverService] = web.AppKey("discover")
PHOTOS: web.AppKey[PhotoService] = web.AppKey("photos")
PHOTO_STORE: web.AppKey[PhotoStore] = web.AppKey("photo_store")
EVENTS: web.AppKey[EventStore] = web.AppKey("events")
LIKES: web.AppKey[LikeService] = web.AppKey("likes")
CONVERSATIONS: web.AppKey[ConversationService] = web.AppKey("conversations")
REALTIME: web.AppKey[Realtime] = web.AppKey("realtime")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
PRESENCE: web.AppKey[PresenceStore] = web.AppKey("presence")
WEB_FILES: web.AppKey[WebFiles] = web.AppKey("web_files")
ERASURE: web.AppKey[ErasureService] = web.AppKey("erasure")
CLEANUP: web.AppKey[CleanupWorker] = web.AppKey("cleanup")
EXPORT: web.AppKey[ExportService] = web.AppKey("export")
ADMIN: web.AppKey[AdminService] = web.AppKey("admin")
MODERATION: web.AppKey[ModerationService] = web.AppKey("moderation")
ACTIVE_USERS: web.AppKey[ActiveUsers] = web.AppKey("active_users")
# Compatibility: the assessment, crossed paths and daily suggestions.
ASSESSMENT: web.AppKey[AssessmentService] = web.AppKey("assessment")
CROSSED_PATHS: web.AppKey[CrossedPaths] = web.AppKey("crossed_paths")
SUGGESTIONS: web.AppKey[SuggestionService] = web.AppKey("suggestions")
SUGGESTION_JOB: web.AppKey[SuggestionJob] = web.AppKey("suggestion_job")
