"""The LLM replica's queue: every request goes to the model's engine at once and joins the running decode at the
next token boundary (continuous batching), admitted by its task's lane and user (the engine ranks its waiting
requests as the diffusion replicas' admission does). While it decodes, the answer so far is published as the task's
`text` events (streaming) and the task's cancellation is read; a cancelled task leaves the decode at once, the others
decode on. Serve's batching knobs apply: `max_batch_size` caps the rows decoding together."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from deployments.metrics import deployment_metrics
from deployments.scheduler import LANE_RANK
from models.chat import Ask
from records.checkpoints import Checkpoints
from records.tasks import Cancelled, ProgressReporter

TICK_S = 0.1  # how often a running request's text is published (when it grew)
CANCEL_EVERY = 3  # ticks between cancellation reads


class Decoding:
    def __init__(self, model: Any, progress: ProgressReporter, checkpoints: Checkpoints, replica: str) -> None:
        self.model, self.progress, self.checkpoints, self.replica = model, progress, checkpoints, replica
        self.batch_wait_timeout_s = 0.0  # requests join at token boundaries: nothing waits for a batch to fill

    async def __call__(self, ask: Ask, task_id: str | None, stage: str,
                       finish: Callable[[str | None, float], Any]) -> Any:
        started = time.perf_counter()
        [(lane, user, _, _)] = await asyncio.to_thread(self.checkpoints.load, [(task_id, "")])
        latest = [""]
        answer = self.model.submit(ask, LANE_RANK.get(lane or "normal", 1), user or "",
                                   lambda text: latest.__setitem__(0, text))
        waiting = asyncio.wrap_future(answer)
        await asyncio.to_thread(self.progress.started, [task_id], stage)
        sent, ticks = "", 0
        try:
            while not waiting.done():
                await asyncio.wait([waiting], timeout=TICK_S)
                ticks += 1
                if task_id is None:
                    continue
                if latest[0] != sent and not waiting.done():
                    sent = latest[0]
                    await asyncio.to_thread(self.progress.text, task_id, sent)
                if ticks % CANCEL_EVERY == 0 and (await asyncio.to_thread(self.progress.cancelled, [task_id]))[0]:
                    self.model.engine.cancel(answer)
                    raise Cancelled(f"{stage} cancelled")
            text = waiting.result()
        except asyncio.CancelledError:  # the caller gave up: its row is freed for the others
            self.model.engine.cancel(answer)
            raise
        result = finish(text, started)
        if task_id is not None and text is not None:
            await asyncio.to_thread(self.progress.text, task_id, latest[0])
        result.metadata.replica = self.replica
        result.metadata.batch_size = answer.batch
        deployment_metrics().run_ms.observe(result.metadata.run_ms, {"deployment": self.model.name})
        return result

    def set_max_batch_size(self, size: int) -> None:
        self.model.engine.limit = size

    def set_batch_wait_timeout_s(self, timeout_s: float) -> None:
        """Kept for the config's view only: a request never waits for others to start."""
        self.batch_wait_timeout_s = timeout_s

    def _get_max_batch_size(self) -> int:
        return self.model.engine.limit

    def _get_batch_wait_timeout_s(self) -> float:
        return self.batch_wait_timeout_s
