r"""proximity_server: an async, realtime-first server for proximity and chat.

The package is grouped by role; the folder names draw the architecture:

    app/        the aiohttp application: factory, route table, typed state
                keys, the composition root (lifecycle), middlewares, request
                parsing and authentication, the OpenAPI document
    features/   the logic of each feature, one module per feature, named like
                its handler (handlers/) and its store (store/)
    realtime/   live delivery: the slim socket, the hub of local sockets, the
                broker protocol, the commands both sockets share, the
                signed-in user's socket
    runtime/    the process: serving and draining, the supervisor of
                --workers, embedded services for development, metrics, logs

Dependencies run one way:

    handlers/ --> proximity_server.features --> store/  (Redis, PostgreSQL, S3)
              \-> proximity_server.realtime --/
    protocol/ (wire format) and config/ (settings) are leaves everyone may use.

Data flow of a match:

    phone --POST /match--> handlers.proximity --> features.proximity
        --> store.proximity (one Lua script: auth, intersect, dedupe, count, PUBLISH)
    Redis pub/sub --> store.broker_redis/_sharded (every process) --> realtime.hub
        --> realtime.fanout (protocol.bus decodes) --> sockets
"""

from proximity_server.app.factory import create_app

__all__ = ["create_app"]
