"""Prompt dedup's resolution: exact normalised match, then a semantic match among the scope's nearest prompts (a vector set),
guarded by salient details."""
from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from composition.dedup.matching import DEFAULT_THRESHOLD, is_duplicate, normalize_prompt, salient_conflict
from composition.schemas.common import Match
from composition.store.prompt_index import PromptIndex, digest
from config.composition import DedupArgs


class Neighbour(BaseModel):
    """A similar prompt of the scope that is no duplicate and no hard negative (no salient conflict): its kept
    latents may start the new prompt's job (approximate reuse)."""

    prompt_key: str
    similarity: float


class Resolution(BaseModel):
    """The prompt key a prompt maps to, how it was found, and what `Dedup.commit` writes for it."""

    prompt_key: str
    match: Match
    similarity: float | None = Field(default=None, description="a semantic match's cosine; None: found by wording")
    scope: str
    prompt: str
    normalized: str
    vector: bytes | None = Field(default=None, repr=False, description="float32 embedding of a new prompt")
    neighbour: Neighbour | None = Field(default=None, description="a new prompt's nearest reusable prompt")


def scope_of(*parts: object) -> str:
    """Prompts are only ever merged within one scope (workflow, model, style, size, steps, ...)."""
    return digest(*parts, length=16)


class Dedup:
    """`resolve` reads the index only; `commit`, once the request may proceed, records the prompt's use."""

    def __init__(self, prompts: PromptIndex, embedder, args: DedupArgs, reuse_floor: float | None = None) -> None:
        """`reuse_floor`: the least similarity of a `Neighbour` (None: none is looked for)."""
        self.prompts = prompts
        self.reuse_floor = reuse_floor
        self.embedder = embedder
        self.enabled = args.enabled and embedder is not None
        self.threshold = args.threshold if args.threshold is not None else DEFAULT_THRESHOLD
        self.candidates = args.candidates

    async def resolve(self, scope: str, prompt: str) -> Resolution:
        normalized = normalize_prompt(prompt)
        found = dict(scope=scope, prompt=prompt, normalized=normalized)
        own_key = digest(scope, normalized)
        if prompt_key := await self.prompts.exact(scope, normalized):  # its own key, or a paraphrase's remembered one
            return Resolution(prompt_key=prompt_key, match="exact" if prompt_key == own_key else "semantic", **found)
        new = Resolution(prompt_key=own_key, match="new", **found)
        if not self.enabled:
            return new
        vector = np.asarray(await self.embedder.embed.remote(normalized), dtype=np.float32)
        best: Resolution | None = None
        near: Neighbour | None = None
        for prompt_key, other, embedding in await self.prompts.candidates(scope, vector, self.candidates):
            if other == normalized:  # registered by a concurrent request since the exact lookup
                return Resolution(prompt_key=prompt_key, match="exact", **found)
            similarity = float(vector @ embedding)
            if is_duplicate(normalized, other, similarity, self.threshold):
                if best is None or similarity > best.similarity:
                    best = Resolution(prompt_key=prompt_key, match="semantic", similarity=round(similarity, 4),
                                      **found)
            elif (self.reuse_floor is not None and similarity >= self.reuse_floor
                  and (near is None or similarity > near.similarity) and salient_conflict(normalized, other) is None):
                near = Neighbour(prompt_key=prompt_key, similarity=round(similarity, 4))
        return best or new.model_copy(update={"vector": vector.tobytes(), "neighbour": near})

    async def commit(self, resolution: Resolution) -> Resolution:
        """Records the use: an exact match (or a remembered paraphrase) keeps its prompt indexed, a new semantic one is
        remembered (the same wording next time skips the embedding), a new prompt is indexed (unless a concurrent
        request indexed it first: then it is an exact match)."""
        if resolution.match != "new" and resolution.similarity is None:  # found by its wording
            await self.prompts.touch(resolution.scope, resolution.normalized)
            return resolution
        if resolution.match == "semantic":
            await self.prompts.alias(resolution.scope, resolution.normalized, resolution.prompt_key)
            return resolution
        vector = np.frombuffer(resolution.vector, dtype=np.float32) if resolution.vector else None
        prompt_key, created = await self.prompts.register(resolution.scope, resolution.prompt, resolution.normalized,
                                                          vector)
        return resolution.model_copy(update={"prompt_key": prompt_key, "match": "new" if created else "exact"})
