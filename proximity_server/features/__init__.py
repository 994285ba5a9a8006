"""The logic of each feature, one module per feature, no HTTP in sight.

A feature keeps one name across the layers: ``handlers/likes.py`` -->
``features/likes.py`` --> ``store/likes.py``.

    accounts.py       sign-up, login, refresh-token rotation, log out everywhere,
                      verify_access (the access-token check of every transport)
    tokens.py         access tokens (JWT): issue and verify
    passwords.py      argon2id hashing and password rules
    rate_limit.py     per-user and per-IP fixed-window limits
    profiles.py       profiles and their public view
    photos.py         photo upload (decode, strip, resize), order, delete
    discover.py       discovery: filters and ranking
    likes.py          likes, passes, matches, unmatch, blocks, reports
    conversations.py  conversations and messages
    events.py         publishing committed events of the user event log
    proximity.py      proximity sessions, match attempts, session sockets
    stats.py          admin statistics and the counter flusher
    taxonomy.py       interests --> categories (data/taxonomy.json)
    pagination.py     keyset cursors shared by the list routes
    health.py         readiness probes of Redis, PostgreSQL and the broker
    errors.py         typed API errors (code + HTTP status); as_api_error, the
                      one exception --> error mapping of HTTP and the sockets
"""
