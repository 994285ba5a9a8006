"""All I/O with Redis, PostgreSQL and blob storage; nothing here imports aiohttp.

    redis_keys.py    Redis key and channel names (one prefix per app; hash tags for a cluster)
    redis_client.py  the Redis client (plain or cluster); Lua sources from lua/
    mux.py           one multiplexed connection (per primary) for the hot path
    lua/             hot-path scripts, one round trip each
    proximity.py     sessions and match decisions
    presence.py      per-process presence claims
    rate_limit.py    fixed-window counters
    pubsub.py        publishing on user and token channels
    db.py            asyncpg pool and numbered migrations (migrations/)
    accounts.py      users, refresh tokens, revocation
    profiles.py      profiles
    photos.py        photo rows and the photo bytes (S3 or a local folder)
    discover.py      discovery queries
    likes.py         likes, passes, matches, reports
    hidden.py        blocks and the hidden pairs the hot path checks
    conversations.py conversations, messages, read marks
    events.py        the per-user durable event log
    broker_redis.py  pub/sub listening on one Redis (SUBSCRIBE)
    broker_sharded.py  pub/sub listening on a cluster (SSUBSCRIBE, one connection per primary)
    errors.py        which driver errors mean "a backing service is unavailable"
    stats.py         counter flush to PostgreSQL and stats reads
"""
