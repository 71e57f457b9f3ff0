"""LoRA files as diffusers saves them, made with peft on a denoiser of the family's architecture."""
import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save


def lora_bytes(denoiser: torch.nn.Module, prefix: str, seed: int, rank: int = 4, targets=("to_q", "to_v")) -> bytes:
    """A `.safetensors` LoRA: peft's state dict of a seeded adapter on `targets` (module names or suffixes), keys
    under the denoiser's prefix."""
    torch.manual_seed(seed)
    denoiser.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=list(targets)),
                         adapter_name="made")
    state = {f"{prefix}.{k}": v.contiguous() * 3
             for k, v in get_peft_model_state_dict(denoiser, adapter_name="made").items()}
    denoiser.delete_adapters("made")
    return save(state, metadata={"format": "pt"})


def save_lora(path, denoiser: torch.nn.Module, prefix: str, seed: int, rank: int = 4, targets=("to_q", "to_v")):
    path.write_bytes(lora_bytes(denoiser, prefix, seed, rank, targets))
