"""Live delivery to WebSockets, on any number of processes.

    connection.py   the slim socket: detached from aiohttp after the upgrade,
                    bounded send queue, heartbeat, close codes
    hub.py          this process's sockets grouped by channel; subscribes a
                    channel on the broker at its first local socket
    broker.py       the Redis pub/sub listener (plain and sharded) feeding the hub
    user_socket.py  the signed-in user's socket (WS /ws): auth phase, commands
    delivery.py     per-socket ordering of the user's event log: in id order,
                    once, gaps filled from the log (close 4009 when they can't be)

Durable events are stored first (store/events.py) and published second, so
a socket that missed a publish reads the gap back from the log.
"""
