"""Step caches on a shared denoiser (`acceleration: step_cache`): diffusers' first-block cache hooks, driven per
fused forward rather than per pipeline.

The hooks live on the denoiser's blocks, which every job of a replica shares; their state (the last fully computed
step's residuals) is kept per *cache context*. The pipelines name their own context around each call ("cond",
"uncond"), but from the job's thread, while forwards run in the step scheduler's (`models/fusion.py`); so the
pipeline's naming is only noted (`FusingDenoiser.cache_context`) and the context is set here, around the forward
that runs:

- a forward of jobs that asked for the cache runs in the context of exactly its members (their call tokens, sorted,
  and each one's "cond"/"uncond"): the state carries over from step to step while the same jobs run together, and a
  join or a leave starts a new context, whose first forward is computed in full (the cached residuals are rows of
  the old batch). Rows are merged in token order, so a context's rows stay put;
- a forward of jobs that did not ask runs in a fresh context dropped after it: every block computes, the output is
  the uncached one bit for bit (`tests/models/test_acceleration.py`);
- a job resumed from a checkpoint is a new call (a new token): its cache starts empty, so its first step after the
  resume is computed in full. Its pixels may differ from the uninterrupted cached run's (that run may have skipped
  that step); an uncached job's resume stays exact.

The hooks are installed on a denoiser on its first cached forward and stay; `CacheUse.release` drops a call's states.
"""
from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from config.acceleration import StepCacheArgs

T = TypeVar("T")
_LEADER_HOOK = "fbc_leader_block_hook"  # diffusers.hooks.first_block_cache._FBC_LEADER_BLOCK_HOOK
_TOKENS = itertools.count(1)
# denoiser → (its cache's config, the hooks' shared state manager)
_INSTALLED: weakref.WeakKeyDictionary[torch.nn.Module, tuple[StepCacheArgs, Any]] = weakref.WeakKeyDictionary()


class CacheUse:
    """One pipeline call's use of its family's step cache: its token (which names its cache states) and the forwards
    the cache served, by context ("cond", "uncond")."""

    def __init__(self, config: StepCacheArgs) -> None:
        self.config = config
        self.token = next(_TOKENS)
        self.forwards: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.modules: list[torch.nn.Module] = []

    @property
    def steps_skipped(self) -> int:
        """Forwards served from the cache, in steps (a guided step runs a forward per context)."""
        return sum(self.skipped.values()) // max(len(self.forwards), 1)

    def count(self, context: str, skipped: bool) -> None:
        self.forwards[context] = self.forwards.get(context, 0) + 1
        self.skipped[context] = self.skipped.get(context, 0) + int(skipped)

    def release(self) -> None:
        """Drops every cache state this call's forwards left (the call ended)."""
        for module in self.modules:
            _drop(module, lambda name: self.token in _members(name))


def installed(module: torch.nn.Module) -> bool:
    return module in _INSTALLED


def cached_forward(calls: list[Any], forward: Callable[[], T]) -> T:
    """Runs `forward` (of `calls`, `DenoiserCall`s of one module that all asked for the cache or all did not) in its
    cache context, and counts each cached call's skip."""
    module, use = calls[0].module, calls[0].cache
    if use is None and not installed(module):
        return forward()
    manager = None
    if use is None:
        name = f"exact.{next(_TOKENS)}"
    else:
        manager = install(module, use.config)
        name = "+".join(f"{call.cache.token}.{call.context}" for call in calls)
        members = _members(name)  # another membership of these calls' is over: its states go
        _drop(module, lambda found: _members(found) != members and bool(_members(found) & members))
    with module.cache_context(name):
        output = forward()
        skipped = manager is not None and not manager.get_state().should_compute
    if use is None:
        _drop(module, lambda found: found == name)
    for call in calls:
        if call.cache is not None:
            call.cache.count(call.context, skipped)
            if module not in call.cache.modules:
                call.cache.modules.append(module)
    return output


def install(module: torch.nn.Module, config: StepCacheArgs) -> Any:
    """The first-block cache's hooks on `module` (installed once, again if the config changed): their state
    manager."""
    from diffusers.hooks import FirstBlockCacheConfig

    found = _INSTALLED.get(module)
    if found is not None and found[0] == config:
        return found[1]
    if found is not None:
        module.disable_cache()
    _compiled_inside_hooks(module)
    module.enable_cache(FirstBlockCacheConfig(threshold=config.threshold))
    manager = next(registry.get_hook(_LEADER_HOOK).state_manager for block in module.modules()
                   if (registry := getattr(block, "_diffusers_hook", None)) and registry.get_hook(_LEADER_HOOK))
    _INSTALLED[module] = (config, manager)
    return manager


def _compiled_inside_hooks(module: torch.nn.Module) -> None:
    """Regional compilation (`models.loading.compile_denoiser`) compiled each block's whole call, which would run the
    hooks inside the graph (their eager-only check breaks a full graph, and their per-context state would guard
    it); each such block gets its own forward compiled instead (as fully), which the hooks wrap and run eagerly. The
    blocks compile again on their next call."""
    for block in module.modules():
        if block.__dict__.get("_compiled_call_impl") is not None:
            block._compiled_call_impl = None
            block.forward = torch.compile(block.forward, fullgraph=True)


def _members(name: str) -> frozenset[int]:
    """The call tokens a cached context's name holds ("3.cond+4.cond" → {3, 4}; an uncached one's: none)."""
    if name.startswith("exact."):
        return frozenset()
    return frozenset(int(part.split(".")[0]) for part in name.split("+"))


def _drop(module: torch.nn.Module, matches: Callable[[str], bool]) -> None:
    found = _INSTALLED.get(module)
    if found is None:
        return
    states = found[1]._state_cache  # diffusers keeps one state per context name and drops them only all at once
    for name in [name for name in states if matches(name)]:
        del states[name]
