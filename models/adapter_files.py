"""LoRA adapter files: a family's adapter folder, a file's weights read from its bytes, each file's check against the
family's model (also of uploaded files) and the tiny source's demo adapter."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from config.families import AdapterPolicy, adapter_size_error
from config.ids import ADAPTER_ID
from config.settings import Settings

_LORA_KEY = re.compile(r"^(?P<component>[a-z_0-9]+)\.(?P<module>.+?)\.(?P<part>lora_A|lora_B|lora\.down|lora\.up)"
                       r"(?:\.[a-z_]+)?\.weight$")
_DOWN = ("lora_A", "lora.down")
DEMO_ID = "demo"


def folder_of(policy: AdapterPolicy, family: str) -> Path:
    """The family's adapter folder: the policy's, else MONTAGE_DATA_DIR/adapters/<family>; relative to the
    repository, so every process of the app finds the same one."""
    folder = policy.folder or Settings().data_dir / "adapters" / family
    return folder if folder.is_absolute() else Path(__file__).resolve().parents[1] / folder


def read_weights(data: bytes) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors from its bytes, in memory: weights mapped from the file would change under a live
    adapter when the file is replaced."""
    from safetensors.torch import load

    return load(data)


def inspect_file(name: str, data: bytes, pipe: Any, policy: AdapterPolicy, prefix: str,
                 targets: tuple[str, ...] | None = None) -> tuple[int | None, str | None]:
    """(rank, why it cannot be used) of one adapter file (`name`, its id; `data`, its bytes) for `pipe`'s model: its
    name, its size, that it holds LoRA weights, their rank, that every module it adapts exists in the pipeline with the
    shapes the weights have and, with `targets` (hot-swap slots), is a denoiser (`prefix`) module named so."""
    if not re.match(ADAPTER_ID, name):
        return None, "the file's name is no adapter id (lowercase letters, digits, '.', '_', '-'; up to 64)"
    if why := adapter_size_error(len(data), policy.max_mb):
        return None, why
    try:
        loaded = type(pipe).lora_state_dict(read_weights(data))
    except Exception as error:  # a broken or foreign file: the catalogue says why, no replica fails on it
        return None, f"not a LoRA file diffusers reads ({type(error).__name__})"
    state = loaded[0] if isinstance(loaded, tuple) else loaded
    shapes: dict[tuple[str, str], dict[str, torch.Size]] = {}
    for key, tensor in state.items():
        if match := _LORA_KEY.match(key):
            part = "down" if match["part"] in _DOWN else "up"
            shapes.setdefault((match["component"], match["module"]), {})[part] = tensor.shape
    if not shapes:
        return None, "no LoRA weights in the file"
    if any(set(pair) != {"down", "up"} or pair["down"][0] != pair["up"][1] for pair in shapes.values()):
        return None, "its LoRA weights do not pair up (each module's down and up projections, one rank)"
    rank = max(pair["down"][0] for pair in shapes.values())  # ranks may differ per module
    if rank > policy.max_rank:
        return rank, f"rank {rank} is over the limit of {policy.max_rank}"
    for (component, name), pair in shapes.items():
        if why := _mismatch(getattr(pipe, component, None), component, name, pair):
            return rank, f"{why}: a LoRA of another base model"
        if targets is not None and (component != prefix or not name.endswith(tuple(f".{t}" for t in targets))):
            return rank, (f"it adapts {component}.{name}, outside the compiled model's hot-swap slots "
                          f"({prefix} modules {', '.join(targets)}: adapters.compiled_targets)")
    return rank, None


def _mismatch(model: Any, component: str, name: str, pair: dict[str, torch.Size]) -> str | None:
    if not isinstance(model, torch.nn.Module):
        return f"the model has no {component}"
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return f"{component} has no module {name}"
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() < 2:
        return f"{component}.{name} takes no LoRA"
    if (pair["down"][1], pair["up"][0]) != (weight.shape[1], weight.shape[0]):
        return (f"{component}.{name} maps {weight.shape[1]} to {weight.shape[0]} features, the LoRA "
                f"{pair['down'][1]} to {pair['up'][0]}")
    return None


def write_demo(path: Path, denoiser: torch.nn.Module, prefix: str, seed: int = 0) -> None:
    """A seeded rank-4 LoRA on the denoiser's attention projections, as diffusers saves one (the demo adapter of
    the tiny source, made here as its tokenizers are). Written atomically: replicas may race to write it."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v"])
    denoiser.add_adapter(config, adapter_name="_demo")
    try:
        state = {f"{prefix}.{key}": (value * 4 if ".lora_B." in key else value).contiguous()
                 for key, value in get_peft_model_state_dict(denoiser, adapter_name="_demo").items()}
    finally:
        denoiser.delete_adapters("_demo")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    save_file(state, str(partial), metadata={"format": "pt"})
    os.replace(partial, path)


def file_version(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size
