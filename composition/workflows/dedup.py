"""Prompt dedup: exact normalised match, then a semantic match among the scope's nearest prompts (a vector set),
guarded by salient details."""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

from composition.dedup.matching import DEFAULT_THRESHOLD, is_duplicate, normalize_prompt
from composition.store.prompts import PromptStore, digest
from config.composition import DedupArgs

Match = Literal["exact", "semantic", "new"]


class Resolution(BaseModel):
    """The prompt key a prompt maps to, and how it was found."""

    prompt_key: str
    match: Match
    similarity: float | None = None


def scope_of(*parts: object) -> str:
    """Prompts are only ever merged within one scope (workflow, model, style, size, steps, ...)."""
    return digest(*parts, length=16)


class Dedup:
    def __init__(self, prompts: PromptStore, embedder, args: DedupArgs) -> None:
        self.prompts = prompts
        self.embedder = embedder
        self.enabled = args.enabled and embedder is not None
        self.threshold = args.threshold if args.threshold is not None else DEFAULT_THRESHOLD
        self.candidates = args.candidates

    async def resolve(self, scope: str, prompt: str) -> Resolution:
        normalized = normalize_prompt(prompt)
        if found := await self.prompts.exact(scope, normalized):
            return Resolution(prompt_key=found, match="exact")
        if not self.enabled:
            return await self._register(scope, prompt, normalized, None)
        vector = np.asarray(await self.embedder.embed.remote(normalized), dtype=np.float32)
        best: Resolution | None = None
        for prompt_key, other, embedding in await self.prompts.candidates(scope, vector, self.candidates):
            if other == normalized:  # registered by a concurrent request since the exact lookup
                return Resolution(prompt_key=prompt_key, match="exact")
            similarity = float(vector @ embedding)
            if is_duplicate(normalized, other, similarity, self.threshold) and (
                    best is None or similarity > best.similarity):
                best = Resolution(prompt_key=prompt_key, match="semantic", similarity=round(similarity, 4))
        if best:
            await self.prompts.alias(scope, normalized, best.prompt_key)
            return best
        return await self._register(scope, prompt, normalized, vector)

    async def _register(self, scope: str, prompt: str, normalized: str, vector: np.ndarray | None) -> Resolution:
        """A new prompt, unless a concurrent request registered the same one first: then an exact match."""
        prompt_key, created = await self.prompts.register(scope, prompt, normalized, vector)
        return Resolution(prompt_key=prompt_key, match="new" if created else "exact")
