"""Prompt optimisation through the LLM deployment."""
from __future__ import annotations

from typing import Any

from composition.schemas.prompts import OptimizedOut, PromptOptimize
from composition.workflows.base import TaskContext, Workflow
from models.types import PromptRequest


class PromptsWorkflow(Workflow[PromptRequest]):
    kind = "prompt"
    job_type = PromptRequest

    async def plan(self, body: PromptOptimize) -> PromptRequest:
        return PromptRequest(prompt=body.prompt, mode=body.mode, target=body.target, temperature=body.temperature,
                             seed=body.seed)

    async def run(self, ctx: TaskContext, request: PromptRequest) -> dict[str, Any]:
        await ctx.stage("optimizing")
        optimized = await self.handle("llm").optimize.remote(request, ctx.task_id)
        await self.services.timings.record("llm", optimized.metadata, 1)  # the unit of LLM work: one request
        return OptimizedOut.model_validate(optimized.model_dump()).model_dump()
