"""The family as the replica's one grouping authority (tiny SDXL in-process, a real Redis): a request is validated once,
where the replica admits it, so an invalid request fails alone instead of failing the group it would have joined."""
from __future__ import annotations

import asyncio

import pytest

from config import keys
from models.errors import InvalidRequest
from models.types import ImageRequest

REDIS_DB = 13  # this module's own database


def _weighted(task: str, negative: str) -> ImageRequest:
    return ImageRequest(prompt=f"a (fox:1.2) in the snow, {task}", negative_prompt=negative, width=64, height=64,
                        steps=2, guidance=5.0, seed=1, prompt_weighting=True)


def test_an_invalid_request_fails_alone_and_is_validated_once(replica, store, monkeypatch):
    """Both requests share a group key (same size, steps, weighting), so admission would batch them together."""
    calls: list[ImageRequest] = []
    validate = replica.model.validate
    monkeypatch.setattr(replica.model, "validate", lambda request: calls.append(request) or validate(request))
    good, bad = _weighted("good", "blurry"), _weighted("bad", "(" * 200 + "blur" + ")" * 200)
    assert replica.model.group_key(good) == replica.model.group_key(bad)
    for task in ("group-good", "group-bad"):
        store.hset(keys.task(task), mapping={"id": task, "status": "running", "lane": "normal", "user_id": "ann"})

    async def both():
        return await asyncio.gather(replica.generate(good, "group-good"), replica.generate(bad, "group-bad"),
                                    return_exceptions=True)

    made, refused = asyncio.run(both())
    assert isinstance(refused, InvalidRequest) and refused.field == "negative_prompt"
    assert made.metadata.model == "sdxl" and made.metadata.replica == replica.replica
    assert calls == [good, bad]  # once each, at submit; the group's run validates nothing again


def test_the_replica_runs_only_one_compatible_group_per_pipeline_call(replica):
    a = ImageRequest(prompt="a kite", width=64, height=64, steps=2, guidance=5.0, seed=1)
    with pytest.raises(ValueError, match="requests: one pipeline call takes one compatible group"):
        replica.model.run_group("generate", [a, a.model_copy(update={"steps": 3})])
