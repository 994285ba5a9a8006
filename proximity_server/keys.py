"""Typed application state keys (``web.AppKey``): nothing lives in globals."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from config.settings import Settings
from proximity_server.accounts import AccountService
from proximity_server.broker import RedisBroker, ShardedBroker
from proximity_server.conversations import ConversationService
from proximity_server.discover import DiscoverService
from proximity_server.hub import Hub
from proximity_server.likes import LikeService
from proximity_server.metrics import Metrics
from proximity_server.photos import PhotoService
from proximity_server.profiles import ProfileService
from proximity_server.proximity import ProximityService, SessionSockets
from proximity_server.rate_limit import RateLimiter, TrustedProxies
from proximity_server.realtime import Realtime
from proximity_server.stats import CounterFlusher
from proximity_server.taxonomy import Taxonomy
from proximity_server.tokens import AccessTokens
from proximity_server.webapp import WebFiles
from store.events import EventStore
from store.keys import Keys
from store.mux import MuxCluster, MuxRedis
from store.photos import PhotoStore
from store.presence import PresenceStore
from store.pubsub import Publisher
from store.redis_client import RedisClient
from store.stats import StatsStore

SETTINGS = web.AppKey("settings", Settings)
TAXONOMY = web.AppKey("taxonomy", Taxonomy)
REDIS_KEYS = web.AppKey("redis_keys", Keys)
REDIS = web.AppKey[RedisClient]("redis")
REDIS_MUX = web.AppKey[MuxRedis | MuxCluster]("redis_mux")
PUBLISHER = web.AppKey("publisher", Publisher)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)
HUB = web.AppKey("hub", Hub)
BROKER = web.AppKey[RedisBroker | ShardedBroker]("broker")
PROXIMITY = web.AppKey("proximity", ProximityService)
SESSION_SOCKETS = web.AppKey("session_sockets", SessionSockets)
STATS_STORE = web.AppKey("stats_store", StatsStore)
FLUSHER = web.AppKey("flusher", CounterFlusher)
ACCESS_TOKENS = web.AppKey("access_tokens", AccessTokens)
ACCOUNTS = web.AppKey("accounts", AccountService)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", TrustedProxies)
PROFILES = web.AppKey("profiles", ProfileService)
DISCOVER = web.AppKey("discover", DiscoverService)
PHOTOS = web.AppKey("photos", PhotoService)
PHOTO_STORE = web.AppKey[PhotoStore]("photo_store")
EVENTS = web.AppKey("events", EventStore)
LIKES = web.AppKey("likes", LikeService)
CONVERSATIONS = web.AppKey("conversations", ConversationService)
REALTIME = web.AppKey("realtime", Realtime)
METRICS = web.AppKey("metrics", Metrics)
PRESENCE = web.AppKey("presence", PresenceStore)
WEB_FILES = web.AppKey("web_files", WebFiles)
