"""The proximity service tells its decision listeners of every authorised decision."""

from __future__ import annotations

import pytest

from config.settings import Settings
from proximity_server.features.errors import Unauthorized
from proximity_server.features.proximity import ProximityService
from proximity_server.features.taxonomy import OTHER_CATEGORY, load_taxonomy
from store.mux import MuxCluster, MuxRedis
from store.proximity import ClusterProximityStore, MatchDecision, ProximityStore
from store.redis_client import RedisClient
from store.redis_keys import Keys

SESSION_TTL_SECONDS = 60


def _broken_listener(decision: MatchDecision) -> None:
    raise RuntimeError("a listener that fails")


async def test_listeners_hear_authorised_decisions_and_cannot_fail_them(settings: Settings, redis: RedisClient) -> None:
    assert settings.redis_url
    keys = Keys(settings.redis_prefix)
    mux = MuxCluster(settings.redis_url) if settings.redis_cluster else MuxRedis(settings.redis_url)
    store = (
        ClusterProximityStore(redis, mux, keys, OTHER_CATEGORY)
        if isinstance(mux, MuxCluster)
        else ProximityStore(redis, mux, keys, OTHER_CATEGORY)
    )
    heard: list[MatchDecision] = []
    service = ProximityService(
        store, load_taxonomy(), SESSION_TTL_SECONDS, decision_listeners=(_broken_listener, heard.append)
    )
    try:
        await service.create_session("tok_listen_a", ["devops"], presented_secret=None)
        b = await service.create_session("tok_listen_b", ["coding"], presented_secret=None)

        decision = await service.attempt_match("tok_listen_b", "tok_listen_a", b.session_id)
        assert decision.nudged
        assert heard == [decision]  # heard by the second listener although the first one raised

        with pytest.raises(Unauthorized):
            await service.attempt_match("tok_listen_b", "tok_listen_a", "not-the-session-id")
        assert heard == [decision]  # an unauthorised attempt is no decision
    finally:
        await mux.aclose()
