"""LoRA adapters of an image family: the catalogue (a folder of `.safetensors` files and hub ids), each file's check
against the family's model (also of uploaded files), and the `AdapterBank` of a replica (adapters loaded on first use
into the live pipelines, applied per pipeline call, unloaded once released and unused). The base model is never
reloaded."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from config.families import AdapterPolicy, Source, adapter_size_error
from config.ids import ADAPTER_ID
from config.settings import Settings
from models.errors import InvalidRequest
from models.steps import Steps
from models.types import AdapterInfo, Lora

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


class AdapterBank:
    """The adapters loaded into one family's pipelines. `applied(loras, steps)` wraps a pipeline call: it loads what
    is missing and activates the call's adapters at their scales, and again after every step boundary (another
    call may have run its own between two steps). Structure changes (loads, unloads) happen only there, in the
    thread holding the device; `release` (Serve evicting an adapter set) only marks adapters for unloading.

    `pipe` takes adapters through diffusers' pipeline loader (its denoiser and text encoders); `extra` denoisers
    (FLUX Kontext's own transformer) take the same file's denoiser weights under `prefix`."""

    def __init__(self, family: str, pipe: Any, prefix: str, policy: AdapterPolicy, source: Source,
                 extra: tuple[torch.nn.Module, ...] = ()) -> None:
        self.family, self.pipe, self.prefix, self.policy, self.extra = family, pipe, prefix, policy, extra
        self.folder = folder_of(policy, family)
        if source is Source.TINY and policy.demo and not (self.folder / f"{DEMO_ID}.safetensors").exists():
            write_demo(self.folder / f"{DEMO_ID}.safetensors", getattr(pipe, prefix), prefix)
        self.capacity = policy.max_loaded * max(1, policy.max_per_request)
        self.counts: Counter[str] = Counter()  # loads, hits, evictions
        self._checked: dict[str, tuple[tuple[int, int], AdapterInfo]] = {}
        self._loaded: dict[str, tuple[int, int] | str | None] = {}  # id → its weights' version, least recent first
        self._uploads: dict[str, tuple[str, bytes]] = {}  # id → (digest, bytes) of an adapter uploaded over HTTP
        self._in_use: Counter[str] = Counter()
        self._released: set[str] = set()
        self._active: tuple[tuple[str, float], ...] | None = ()
        self._lock = threading.Lock()

    def catalogue(self) -> dict[str, AdapterInfo]:
        """Every adapter of the folder and the hub map; a file is checked again only when it changed."""
        found: dict[str, AdapterInfo] = {}
        for path in sorted(self.folder.glob("*.safetensors")) if self.folder.is_dir() else []:
            version = _version(path)
            cached = self._checked.get(path.stem)
            if cached is None or cached[0] != version:
                cached = version, self.check(path.stem, path.read_bytes(), "file")  # read once: check and digest
                self._checked[path.stem] = cached
            found[path.stem] = cached[1]
        for adapter_id in self.policy.hub:
            found.setdefault(adapter_id, AdapterInfo(id=adapter_id, family=self.family, source="hub"))
        return found

    def check(self, name: str, data: bytes, source: str = "upload") -> AdapterInfo:
        """The catalogue entry of an adapter's bytes under id `name`, checked against this model (`error`: why not)."""
        rank, error = inspect_file(name, data, self.pipe, self.policy, self.prefix, self.targets)
        return AdapterInfo(id=name, family=self.family, source=source, rank=rank, size_mb=round(len(data) / 2**20, 3),
                           digest=hashlib.sha256(data).hexdigest()[:16], error=error)

    def local(self, name: str) -> bool:
        """Whether an adapter is the folder's or the hub map's: those win over an upload of the same id."""
        return name in self.policy.hub or (self.folder / f"{name}.safetensors").is_file()

    def upload_digest(self, name: str) -> str | None:
        """The digest of the uploaded adapter this bank has the bytes of, if any."""
        return self._uploads[name][0] if name in self._uploads else None

    def take_upload(self, name: str, digest: str, data: bytes) -> None:
        """An uploaded adapter's bytes (a new digest replaces the adapter at its next use, as a replaced file)."""
        self._uploads[name] = digest, data

    @property
    def uploaded(self) -> list[str]:
        return list(self._uploads)

    def drop_uploads(self, names: list[str]) -> None:
        """Forgets deleted uploads: their bytes go, and they unload once no call uses them."""
        for name in names:
            self._uploads.pop(name, None)
        self.release(names)

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    @property
    def targets(self) -> tuple[str, ...] | None:
        """The only modules an adapter may adapt (None: any module of the pipeline's LoRA-loadable components)."""
        return None

    @contextlib.contextmanager
    def applied(self, loras: tuple[Lora, ...], steps: Steps | None) -> Iterator[Steps | None]:
        """Around one pipeline call, in the thread holding the device: the call's adapters loaded and active (none:
        adapters off), and `steps` wrapped to re-activate them after each step boundary."""
        names = [lora.id for lora in loras]
        with self._lock:
            self._in_use.update(names)
            self._released.difference_update(names)
        try:
            self._activate(loras, first=True)
            if steps is not None:  # another call may load, or activate, adapters between two of these steps
                on_step = steps.on_step

                def reactivate(boundary: Any) -> None:
                    if on_step is not None:
                        on_step(boundary)
                    self._activate(loras)

                steps = dataclasses.replace(steps, on_step=reactivate)
            yield steps
        finally:
            with self._lock:
                self._in_use.subtract(names)

    def release(self, ids: list[str]) -> None:
        """These adapters may be unloaded once no call uses them (done by the next call that holds the device)."""
        with self._lock:
            self._released.update(ids)

    def _activate(self, loras: tuple[Lora, ...], first: bool = False) -> None:
        wanted = tuple((lora.id, lora.scale) for lora in loras)
        if first:  # a file replaced since it was loaded is loaded again
            changed = [name for name, _ in wanted if name in self._loaded and self._loaded[name] != self._file(name)]
            if changed:
                self._unload(changed)
                for name in changed:
                    del self._loaded[name]
                self.counts["evictions"] += len(changed)
        missing = [(index, name) for index, (name, _) in enumerate(wanted) if name not in self._loaded]
        self._collect(keep={name for name, _ in wanted}, incoming=len(missing))
        for name, _ in wanted:
            if name in self._loaded:
                self._loaded[name] = self._loaded.pop(name)
                self.counts["hits"] += first
        for index, name in missing:
            source, weight_name = self._where(name, index)
            version = self._file(name)
            try:
                self._load(name, read_weights(source) if isinstance(source, bytes) else source, weight_name)
            except Exception as error:  # the adapter's fault (a broken or foreign file): the request's 422
                self._unload([name])
                raise InvalidRequest(f"loras.{index}.id", f"adapter {name!r} does not load into {self.family}: "
                                                          f"{type(error).__name__}: {error}") from error
            self._loaded[name] = version
            self.counts["loads"] += 1
            self._active = None
        if wanted != self._active:
            self._apply(wanted)
            self._active = wanted

    def _collect(self, keep: set[str], incoming: int) -> None:
        """Unloads released adapters no call uses, then the least recently used beyond the capacity."""
        with self._lock:
            idle = [name for name in self._loaded if not self._in_use[name] and name not in keep]
            gone = [name for name in idle if name in self._released]
            overflow = len(self._loaded) - len(gone) + incoming - self.capacity
            gone += [name for name in self._victims(idle, keep) if name not in gone][:max(0, overflow)]
            self._released.difference_update(gone)
        if gone:
            self._unload(gone)
            for name in gone:
                del self._loaded[name]
            self.counts["evictions"] += len(gone)
            self._active = None

    def _file(self, name: str) -> tuple[int, int] | str | None:
        """The version of an adapter's weights: its file's (modification time, size), else its upload's digest; None
        for a hub adapter or an unknown one."""
        path = self.folder / f"{name}.safetensors"
        if name in self.policy.hub:
            return None
        return _version(path) if path.is_file() else self.upload_digest(name)

    def _where(self, name: str, index: int) -> tuple[str | bytes, str | None]:
        """A hub repo (and the file in it), or the bytes of the adapter's file or upload."""
        if name in self.policy.hub:
            repo, _, weight_name = self.policy.hub[name].partition(":")
            return repo, weight_name or None
        path = self.folder / f"{name}.safetensors"
        if path.is_file():
            return path.read_bytes(), None
        if name in self._uploads:
            return self._uploads[name][1], None
        raise InvalidRequest(f"loras.{index}.id", f"unknown adapter {name!r} for {self.family}")

    # How adapters enter, leave and take effect: each its own adapter in the pipeline's modules.

    def _victims(self, idle: list[str], keep: set[str]) -> list[str]:
        """What may be unloaded to make room, first first: idle adapters (the bank may exceed its capacity)."""
        return idle

    def _load(self, name: str, source: str | dict[str, torch.Tensor], weight_name: str | None) -> None:
        self.pipe.load_lora_weights(_copy(source), weight_name=weight_name, adapter_name=_internal(name))
        for denoiser in self.extra:
            denoiser.load_lora_adapter(_copy(source), weight_name=weight_name, prefix=self.prefix,
                                       adapter_name=_internal(name))

    def _unload(self, names: list[str]) -> None:
        with contextlib.suppress(ValueError):  # a half-loaded adapter may be missing from some module
            self._each("delete_adapters", [_internal(name) for name in names])

    def _apply(self, wanted: tuple[tuple[str, float], ...]) -> None:
        if wanted:
            self._each("enable_lora")
            self._each("set_adapters", [_internal(name) for name, _ in wanted], [scale for _, scale in wanted])
        elif self._loaded:
            self._each("disable_lora")

    def _each(self, method: str, *args: Any) -> None:
        getattr(self.pipe, method)(*args)
        for denoiser in self.extra:
            getattr(denoiser, method)(*args)


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
            denoiser.load_lora_adapter(_copy(source), weight_name=weight_name, prefix=self.prefix,
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


def _version(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _internal(adapter_id: str) -> str:
    """The name an adapter has inside the modules: ids may read as module attributes ('float', 'double') or hold
    dots, which peft's adapter names may not."""
    return f"lora_{hashlib.sha1(adapter_id.encode()).hexdigest()[:12]}"


def _copy(source: str | dict[str, torch.Tensor]) -> str | dict[str, torch.Tensor]:
    """A fresh state dict for each loader (diffusers' loaders consume the one they get)."""
    return dict(source) if isinstance(source, dict) else source


def adapter_bank(family: str, pipe: Any, prefix: str, policy: AdapterPolicy, source: Source, compiled: bool,
                 extra: tuple[torch.nn.Module, ...] = ()) -> AdapterBank:
    """The family's bank: hot-swap slots where the denoiser compiles (build it before compiling), else adapters
    loaded as they come."""
    return (SlotBank if compiled else AdapterBank)(family, pipe, prefix, policy, source, extra)
