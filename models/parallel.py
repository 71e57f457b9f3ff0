"""One request's denoiser over a gang of ranks (a torch.distributed group: NCCL on CUDA, gloo on the CPU).

Rank 0 runs the family's pipelines as a single process would (encoders, the step loop, scheduler, VAE). Each
denoiser call it makes goes to every rank: its inputs are broadcast, each rank runs the transformer's forward, and
rank 0 returns the output. Within a call:

- context parallelism is diffusers' own (`ContextParallelConfig`, `enable_parallelism`): each of the U × R ranks of a
  CFG slice takes a slice of the sequence, Ulysses trades heads for sequence with an all-to-all in attention, ring
  attention passes key/value blocks; the output is gathered at `proj_out`, so every rank of the slice holds it whole.
- CFG parallelism: a guided pipeline calls its denoiser twice a step (conditional, then unconditional) and reads the
  first output only after the second call. Rank 0 answers the first call with an empty buffer and keeps its inputs;
  the second call runs both branches at once, one per CFG slice, and one all-gather over the CFG dimension combines
  them (the buffer is filled before the pipeline reads it).

Ranks > 0 `follow()`: they wait for rank 0's calls until it stops them. Every rank builds the same family (seeded tiny
and random weights are equal on each; pretrained ones are read by each).
"""
from __future__ import annotations

import copy
import threading
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from config.parallel import ParallelLayout
from models.errors import InvalidRequest

_STOP = "stop"
_CALL = "call"


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def enable_context_parallel(transformer: torch.nn.Module, layout: ParallelLayout, mesh: DeviceMesh,
                            device: torch.device) -> None:
    """diffusers' context parallelism on `transformer` over the (ring, ulysses) dimensions of this rank's CFG slice."""
    # here, not above: the LLM's and the Embedder's replicas import this module and need no diffusers
    from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig

    config = ContextParallelConfig(ring_degree=layout.ring, ulysses_degree=layout.ulysses,
                                   mesh=mesh["ring", "ulysses"])

    def resolve(config: ContextParallelConfig) -> ParallelConfig:
        # diffusers 0.42.1 places each rank on device `rank % accelerator count`, a division by zero on a CPU; the
        # mesh is ours (a slice of the gang's), so the rest of its `_resolve_parallel_config` does not apply.
        resolved = ParallelConfig(context_parallel_config=config)
        resolved.setup(dist.get_rank(), dist.get_world_size(), device, mesh=config.mesh)
        transformer._parallel_config = resolved
        return resolved

    transformer._resolve_parallel_config = resolve
    try:
        transformer.enable_parallelism(config=config)
    finally:
        del transformer._resolve_parallel_config


class Gang:
    """This rank's place in a gang: the (cfg, ring, ulysses) device mesh and the denoisers its calls run."""

    def __init__(self, layout: ParallelLayout, device: torch.device) -> None:
        if not dist.is_initialized():
            raise RuntimeError("a gang's ranks join a torch.distributed group first")
        if dist.get_world_size() != layout.degree:
            raise ValueError(f"parallel: the layout's degree is {layout.degree}, the group has "
                             f"{dist.get_world_size()} ranks")
        self.layout, self.device, self.rank = layout, device, dist.get_rank()
        self.mesh = init_device_mesh(device.type, (layout.cfg, layout.ring, layout.ulysses),
                                     mesh_dim_names=("cfg", "ring", "ulysses"))
        self.cfg_rank = self.mesh["cfg"].get_local_rank()
        self.denoisers: list[torch.nn.Module] = []
        self._lock = threading.Lock()  # one call at a time: a replica's jobs run in threads

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def attach(self, *denoisers: torch.nn.Module) -> None:
        """The family's denoisers, in one order on every rank (each call names its index), context-parallel."""
        for denoiser in denoisers:
            heads = denoiser.config.num_attention_heads  # a pretrained model's, known once it loaded
            if heads % self.layout.ulysses:
                raise ValueError(f"parallel.ulysses: {self.layout.ulysses} does not divide the {heads} attention "
                                 f"heads of {type(denoiser).__name__}")
            if self.layout.context > 1:
                enable_context_parallel(denoiser, self.layout, self.mesh, self.device)
            self.denoisers.append(denoiser)

    def view(self, pipe: Any, guided: bool) -> Any:
        """A shallow copy of `pipe` whose transformer is the gang's (rank 0; `guided`: the pipeline makes a
        conditional and an unconditional call each step)."""
        view = copy.copy(pipe)
        view.__dict__["transformer"] = GangDenoiser(self, self.denoisers.index(pipe.transformer), guided)
        return view

    def run(self, index: int, branches: list[dict[str, Any]]) -> list[torch.Tensor]:
        """Rank 0: one call of denoiser `index` on every rank, one branch per CFG slice (or one branch on all);
        each branch's output."""
        with self._lock:
            tensors: list[torch.Tensor] = []
            self._broadcast_object((_CALL, index, [_spec(branch, tensors) for branch in branches]))
            for tensor in tensors:
                dist.broadcast(tensor.contiguous(), src=0)
            return self._execute(index, branches)

    def follow(self) -> None:
        """Ranks > 0: run rank 0's calls until it stops the gang."""
        while (header := self._broadcast_object(None))[0] != _STOP:
            _, index, specs = header
            tensors: list[torch.Tensor] = []
            branches = [_build(spec, self.device, tensors) for spec in specs]
            for tensor in tensors:
                dist.broadcast(tensor, src=0)
            self._execute(index, branches)

    def stop(self) -> None:
        """Rank 0: the followers return from `follow()`."""
        with self._lock:
            self._broadcast_object((_STOP, None, None))

    def _execute(self, index: int, branches: list[dict[str, Any]]) -> list[torch.Tensor]:
        if len(branches) not in (1, self.layout.cfg):
            raise ValueError(f"a gang call runs 1 or {self.layout.cfg} branches, got {len(branches)}")
        with torch.inference_mode():
            output = self.denoisers[index](**branches[self.cfg_rank % len(branches)])[0]
            if len(branches) == 1:
                return [output]
            gathered = [torch.empty_like(output) for _ in branches]
            dist.all_gather(gathered, output.contiguous(), group=self.mesh.get_group("cfg"))
            return gathered

    def _broadcast_object(self, value: Any) -> Any:
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]


class GangDenoiser:
    """Rank 0's denoiser for one pipeline call: each call runs on the gang; guided calls pair up when the layout
    splits CFG (the conditional output is filled in by the unconditional call). Pipelines call it with
    `return_dict=False`; every other attribute is the denoiser's own."""

    def __init__(self, gang: Gang, index: int, guided: bool) -> None:
        self._gang, self._index = gang, index
        self._module = gang.denoisers[index]
        self._pairs = guided and gang.layout.cfg > 1
        self._pending: tuple[dict[str, Any], torch.Tensor] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    @property
    def forward(self) -> Any:  # the denoiser's signature binds a fused call's inputs (models/fusion.py)
        return self._module.forward

    def __call__(self, **inputs: Any) -> tuple[torch.Tensor]:
        if not self._pairs:
            return (self._gang.run(self._index, [inputs])[0],)
        if self._pending is None:
            hidden = inputs["hidden_states"]
            shape = (hidden.shape[0], self._module.config.out_channels, *hidden.shape[2:])
            buffer = torch.empty(shape, dtype=hidden.dtype, device=hidden.device)
            self._pending = (inputs, buffer)
            return (buffer,)
        conditional, buffer = self._pending
        self._pending = None
        outputs = self._gang.run(self._index, [conditional, inputs])
        buffer.copy_(outputs[0])
        return (outputs[1],)


def _spec(value: Any, tensors: list[torch.Tensor]) -> Any:
    """A call's inputs with each tensor replaced by its slot, shape and dtype (appended to `tensors`)."""
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return ("__tensor__", len(tensors) - 1, tuple(value.shape), value.dtype)
    if isinstance(value, dict):
        return {name: _spec(item, tensors) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_spec(item, tensors) for item in value)
    return value


def _build(spec: Any, device: torch.device, tensors: list[torch.Tensor]) -> Any:
    """The inverse of `_spec` on a follower: empty tensors (appended to `tensors`, in slot order) to receive into."""
    if isinstance(spec, tuple) and len(spec) == 4 and spec[0] == "__tensor__":
        tensors.append(torch.empty(spec[2], dtype=spec[3], device=device))
        return tensors[-1]
    if isinstance(spec, dict):
        return {name: _build(item, device, tensors) for name, item in spec.items()}
    if isinstance(spec, (list, tuple)):
        return type(spec)(_build(item, device, tensors) for item in spec)
    return spec


def join(family: Any, gang: Gang) -> None:
    """Makes `family` (built alike on every rank) run its denoiser calls on `gang`."""
    gang.attach(*dict.fromkeys(family.denoisers))
    family.gang = gang


def check_sequence(layout: ParallelLayout, family: Any, request: Any) -> None:
    """Refuses a request whose token sequence the context ranks cannot split evenly (diffusers' equipartition),
    naming its width."""
    cell = family.size_multiple  # pixels per token: the VAE's downsampling times the patch
    frames = (getattr(request, "num_frames", 1) - 1) // family.frame_multiple + 1
    tokens = (request.width // cell) * (request.height // cell) * frames
    if tokens % layout.context:
        raise InvalidRequest("width", f"{family.name}'s gang splits the sequence over {layout.context} ranks; "
                                      f"{request.width}×{request.height} is {tokens} tokens, not a multiple")
