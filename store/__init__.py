"""All I/O with Redis and PostgreSQL.

    keys.py          Redis key and channel names (one prefix per app)
    redis_client.py  the Redis client; Lua sources from lua/
    lua/             hot-path scripts (one round trip each)
    proximity.py     sessions and match decisions (Redis)
    stats.py         counter flush to PostgreSQL and stats reads
    db.py            asyncpg pool and numbered migrations (migrations/)

Nothing here imports aiohttp.
"""
