"""A replica's LoRA adapters of an image family: `adapter_bank` picks its bank, the `SlotBank` here (hot-swap slots of a
compiled denoiser) or the `AdapterBank` (`models/adapter_bank.py`: adapters loaded as they come)."""
from __future__ import annotations

from typing import Any

import torch

from config.families import AdapterPolicy, Source
from models.adapter_bank import AdapterBank, fresh_copy


class SlotBank(AdapterBank):
    """The bank of a compiled denoiser: `max_per_request` LoRA slots of the policy's `max_rank` on its
    `compiled_targets`, injected before it compiles and always active. An adapter is hot-swapped into a slot's
    weights (padded to the slot's rank: no new module, no recompilation) and a scale is a value written into the
    slot's scaling tensors; an empty slot has scale 0. Only denoiser weights on the slots' modules fit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from peft import LoraConfig
        from peft.utils.hotswap import prepare_model_for_compiled_hotswap

        self.capacity = max(1, self.policy.max_per_request)
        self.slots = [f"slot{index}" for index in range(self.capacity)]
        self._slot_of: dict[str, str] = {}
        config = LoraConfig(r=self.policy.max_rank, lora_alpha=self.policy.max_rank,
                            target_modules=list(self.policy.compiled_targets))
        for denoiser in self.denoisers:
            for slot in self.slots:
                denoiser.add_adapter(config, adapter_name=slot)
            denoiser.set_adapters(self.slots, [0.0] * len(self.slots))
            prepare_model_for_compiled_hotswap(denoiser, target_rank=self.policy.max_rank)
        self._scalings = {slot: self._scaling_tensors(slot) for slot in self.slots}

    @property
    def denoisers(self) -> tuple[torch.nn.Module, ...]:
        return getattr(self.pipe, self.prefix), *self.extra

    @property
    def targets(self) -> tuple[str, ...] | None:
        return tuple(self.policy.compiled_targets)

    def _scaling_tensors(self, slot: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(scaling tensor, its value at scale 1) of each of the slot's LoRA layers."""
        from peft.tuners.lora import LoraLayer

        return [(layer.scaling[slot], layer.scaling[slot].clone()) for denoiser in self.denoisers
                for layer in denoiser.modules() if isinstance(layer, LoraLayer) and slot in layer.scaling]

    def _victims(self, idle: list[str], keep: set[str]) -> list[str]:
        """Idle adapters first, then those of paused calls (each swaps its own back in at its next step)."""
        return idle + [name for name in self._loaded if name not in idle and name not in keep]

    def _load(self, name: str, source: str | dict[str, torch.Tensor], weight_name: str | None) -> None:
        slot = next(slot for slot in self.slots if slot not in self._slot_of.values())
        for denoiser in self.denoisers:
            denoiser.load_lora_adapter(fresh_copy(source), weight_name=weight_name, prefix=self.prefix,
                                       adapter_name=slot, hotswap=True)
        self._slot_of[name] = slot
        self._scalings[slot] = [(tensor, tensor.clone()) for tensor, _ in self._scalings[slot]]

    def _unload(self, names: list[str]) -> None:
        for name in names:
            if (slot := self._slot_of.pop(name, None)) is not None:
                for tensor, _ in self._scalings[slot]:
                    tensor.zero_()

    def _apply(self, wanted: tuple[tuple[str, float], ...]) -> None:
        scales = {self._slot_of[name]: scale for name, scale in wanted}
        with torch.no_grad():
            for slot in self.slots:
                for tensor, unit in self._scalings[slot]:
                    tensor.copy_(unit * scales.get(slot, 0.0))


def adapter_bank(family: str, pipe: Any, prefix: str, policy: AdapterPolicy, source: Source, compiled: bool,
                 extra: tuple[torch.nn.Module, ...] = ()) -> AdapterBank:
    """The family's bank: hot-swap slots where the denoiser compiles (build it before compiling), else adapters
    loaded as they come."""
    return (SlotBank if compiled else AdapterBank)(family, pipe, prefix, policy, source, extra)
