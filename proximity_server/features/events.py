"""Publishing committed events: the change is durable before anyone hears of it.

A failed publish is logged, not raised: the write has committed, and a
client that missed the publish gets the event from ``events_since`` when it
resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from store.events import Event, EventStore

log = logging.getLogger(__name__)


async def publish_committed(store: EventStore, events: Sequence[Event]) -> None:
    try:
        await store.publish(events)
    except Exception:
        log.exception("event publish failed; clients get them on resume", extra={"events": len(events)})
