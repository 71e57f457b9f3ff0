"""SDXL's diffusers modules to the original single-file (SGM) layout: the inverse of diffusers' single-file converters
(`diffusers.loaders.single_file_utils`), which ship the other direction only. Written for any block and layer count,
so the tiny model round-trips as the full-size one does."""
from __future__ import annotations

import re

import torch

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _rename(rest: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for new, old in pairs:
        rest = rest.replace(new, old)
    return rest


def unet_to_ldm(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A UNet2DConditionModel's weights under `model.diffusion_model.` (input/middle/output blocks)."""
    per = unet.config.layers_per_block + 1  # an input block per resnet plus the downsampler; an output block per resnet
    state = unet.state_dict()
    with_attention = {int(k.split(".")[1]) for k in state if k.startswith("up_blocks.") and ".attentions." in k}
    out = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if module in _UNET_FIXED:
            ldm = f"{_UNET_FIXED[module]}.{param}"
        elif m := re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            side, block, kind, layer, rest = m.groups()
            index = int(block) * per + int(layer) + (1 if side == "down" else 0)
            part = 0 if kind == "resnets" else 1
            rest = _rename(rest, _RESNET) if kind == "resnets" else rest
            ldm = f"{'input' if side == 'down' else 'output'}_blocks.{index}.{part}.{rest}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            ldm = f"input_blocks.{int(m[1]) * per + per}.0.op.{m[2]}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            slot = 2 if int(m[1]) in with_attention else 1
            ldm = f"output_blocks.{int(m[1]) * per + per - 1}.{slot}.conv.{m[2]}"
        elif m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key):
            kind, index, rest = m.groups()
            if kind == "resnets":
                ldm = f"middle_block.{2 * int(index)}.{_rename(rest, _RESNET)}"
            else:
                ldm = f"middle_block.1.{rest}"
        else:
            raise KeyError(f"no original name for UNet weight {key}")
        out[f"model.diffusion_model.{ldm}"] = value
    return out


_VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def vae_to_ldm(vae: torch.nn.Module) -> dict[str, torch.Tensor]:
    """An AutoencoderKL's weights under `first_stage_model.` (attention projections as 1×1 convolutions)."""
    ups = len(vae.config.up_block_types)
    out = {}
    for key, value in vae.state_dict().items():
        ldm = key.replace("conv_norm_out", "norm_out")
        if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            ldm = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            ldm = f"{m[1]}.mid.attn_1.{_rename(m[2], _VAE_ATTENTION)}"
            if value.ndim == 2:
                value = value[:, :, None, None]
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(.+)", key):
            ldm = f"encoder.down.{m[1]}.block.{m[2].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
            ldm = f"encoder.down.{m[1]}.downsample.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(.+)", key):
            ldm = f"decoder.up.{ups - 1 - int(m[1])}.block.{m[2].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
            ldm = f"decoder.up.{ups - 1 - int(m[1])}.upsample.{m[2]}"
        out[f"first_stage_model.{ldm}"] = value
    return out


def clip_to_ldm(text_encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """SDXL's first text encoder (transformers' CLIP) under `conditioner.embedders.0.transformer.text_model.`."""
    return {f"conditioner.embedders.0.transformer.text_model.{k.removeprefix('text_model.')}": v
            for k, v in text_encoder.state_dict().items()}


_OPEN_CLIP = (("text_model.encoder.layers.", "transformer.resblocks."), ("layer_norm1", "ln_1"),
              ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"), ("self_attn.", "attn."),
              ("text_model.final_layer_norm", "ln_final"),
              ("text_model.embeddings.token_embedding", "token_embedding"))


def open_clip_to_ldm(text_encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """SDXL's second text encoder in OpenCLIP's layout under `conditioner.embedders.1.model.` (one in_proj per
    attention, the projection as a matrix applied on the right)."""
    state = text_encoder.state_dict()
    out = {"positional_embedding": state.pop("text_model.embeddings.position_embedding.weight"),
           "text_projection": state.pop("text_projection.weight").T.contiguous()}
    for key in [k for k in state if ".q_proj." in k]:
        param = key.rsplit(".", 1)[1]
        fused = torch.cat([state.pop(key.replace(".q_proj.", f".{p}_proj.")) for p in "qkv"])
        out[_rename(key.replace(f"q_proj.{param}", f"in_proj_{param}"), _OPEN_CLIP)] = fused
    out.update({_rename(k, _OPEN_CLIP): v for k, v in state.items()})
    return {f"conditioner.embedders.1.model.{k}": v for k, v in out.items()}


def sdxl_checkpoint(pipe) -> dict[str, torch.Tensor]:
    """One SDXL pipeline's UNet, VAE and both text encoders as one SGM-format state dict."""
    return {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae), **clip_to_ldm(pipe.text_encoder),
            **open_clip_to_ldm(pipe.text_encoder_2)}
