"""Live delivery to WebSockets, on any number of processes.

    connection.py   the slim socket: detached from aiohttp after the upgrade,
                    bounded send queue, heartbeat, close codes
    hub.py          this process's sockets grouped by channel; subscribes a
                    channel on the broker at its first local socket; routes
                    raw payloads to the fan-out registered for the channel
    fanout.py       a bus payload (protocol/bus.py) decoded once, encoded once
                    per codec, and sent to the sockets a decision lets through
    broker.py       the Broker protocol the hub relies on (the Redis pub/sub
                    implementations are store/broker_redis.py, _sharded.py)
    commands.py     the command table both sockets share: bad-frame strikes,
                    field checks, one error mapping, exactly one result
    user_socket.py  the signed-in user's socket (WS /ws): auth phase, commands
    delivery.py     per-socket ordering of the user's event log: in id order,
                    once, gaps filled from the log (close 4009 when they can't be)

Durable events are stored first (store/events.py) and published second, so
a socket that missed a publish reads the gap back from the log.
"""
