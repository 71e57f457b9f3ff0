"""Prompt optimisation through the LLM deployment."""
from __future__ import annotations

from typing import Any

from composition.schemas.prompts import OptimizedOut, PromptOptimize
from composition.workflows.base import TaskContext, Workflow
from models.types import PromptRequest


class PromptsWorkflow(Workflow[PromptOptimize]):
    kind = "prompt"
    request_type = PromptOptimize

    async def run(self, ctx: TaskContext, body: PromptOptimize) -> dict[str, Any]:
        await ctx.stage("optimizing")
        request = PromptRequest(prompt=body.prompt, mode=body.mode, target=body.target)
        optimized = await self.handle("llm").optimize.remote(request)
        await self.services.timings.record("llm", optimized.metadata, 1)  # the unit of LLM work: one request
        return OptimizedOut.model_validate(optimized.model_dump()).model_dump()
