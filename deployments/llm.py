"""The LLM family's deployment, named by its spec (`config.specs`), in a module of its own: only the LLM replica loads
its decode engine."""
from __future__ import annotations

from deployments.base import ModelDeployment
from deployments.decoding import Decoding
from models.types import OptimizedPrompt, PromptRequest, Storyboard, StoryboardRequest


class LLMDeployment(ModelDeployment):
    """Each request goes to the model's engine as it arrives (`deployments/decoding.py`): it joins the running
    decode at the next token, admitted by lane and user."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.decoding = Decoding(self.model, self.progress, self.checkpoints, self.replica)

    async def optimize(self, request: PromptRequest, task_id: str | None = None) -> OptimizedPrompt:
        return await self.decoding(self.model.optimize_ask(request), task_id, "optimizing",
                                   lambda answer, started: self.model.optimized(request, answer, started))

    async def storyboard(self, request: StoryboardRequest, task_id: str | None = None) -> Storyboard:
        return await self.decoding(self.model.storyboard_ask(request), task_id, "scenes",
                                   lambda answer, started: self.model.storyboarded(request, answer, started))

    @classmethod
    def batch_methods(cls) -> list[str]:
        return ["decoding"]

    async def probe_requests(self) -> None:
        await self.optimize(PromptRequest(prompt="a warm-up probe"))
