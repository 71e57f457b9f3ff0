"""The LLM replica's queue (deployments/decoding.py) in-process over real Redis: a task cancelled while its answer
decodes leaves the engine within a tick or two; another request decodes on, alone."""
from __future__ import annotations

import asyncio
import json

import pytest

from config import keys
from config.families import LLMArgs
from deployments.llm import LLMDeployment
from models.types import PromptRequest, StoryboardRequest
from records.tasks import Cancelled

REDIS_DB = 7


@pytest.fixture(scope="module")
def replica(store) -> LLMDeployment:
    kwargs = store.connection_pool.connection_kwargs
    return LLMDeployment(LLMArgs(max_new_tokens=24), f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}")


def test_a_task_cancelled_mid_decode_leaves_the_engine_and_the_other_request_finishes(replica, store):
    store.hset(keys.task("long"), mapping={"status": "running", "lane": "normal", "user_id": "u"})
    published = store.pubsub(ignore_subscribe_messages=True)
    published.subscribe(keys.task_events("long"))

    async def scenario():
        # 12 scenes: thousands of tokens, so it still decodes long after the cancel
        board = asyncio.ensure_future(replica.storyboard(StoryboardRequest(theme="a long voyage", num_scenes=12),
                                                         "long"))
        while (message := await asyncio.to_thread(published.get_message, timeout=30)) is None or \
                json.loads(message["data"]).get("event") != "text":
            assert not board.done()
        other = asyncio.ensure_future(replica.optimize(PromptRequest(prompt="a quiet harbour")))
        store.hset(keys.task("long"), "status", "cancelled")
        with pytest.raises(Cancelled):
            await asyncio.wait_for(board, 10)
        assert replica.model.engine.decode.active() <= 1  # the storyboard's row is free
        return await asyncio.wait_for(other, 30)

    result = asyncio.run(scenario())
    assert not result.fallback and result.optimized.startswith("a quiet harbour, ")
