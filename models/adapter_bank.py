"""The `AdapterBank` of a replica: an image family's LoRA catalogue (a folder of `.safetensors` files and hub ids, each
file checked by `models/adapter_files.py`, and uploads) and its adapters loaded on first use into the live pipelines,
applied per pipeline call, unloaded once released and unused. The base model is never reloaded."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch

from config.families import AdapterPolicy, Source
from models.adapter_files import DEMO_ID, file_version, folder_of, inspect_file, read_weights, write_demo
from models.errors import InvalidRequest
from models.steps import Steps
from models.types import AdapterInfo, Lora


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
            version = file_version(path)
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
        return file_version(path) if path.is_file() else self.upload_digest(name)

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
        self.pipe.load_lora_weights(fresh_copy(source), weight_name=weight_name, adapter_name=_internal(name))
        for denoiser in self.extra:
            denoiser.load_lora_adapter(fresh_copy(source), weight_name=weight_name, prefix=self.prefix,
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


def _internal(adapter_id: str) -> str:
    """The name an adapter has inside the modules: ids may read as module attributes ('float', 'double') or hold
    dots, which peft's adapter names may not."""
    return f"lora_{hashlib.sha1(adapter_id.encode()).hexdigest()[:12]}"


def fresh_copy(source: str | dict[str, torch.Tensor]) -> str | dict[str, torch.Tensor]:
    """A fresh state dict for each loader (diffusers' loaders consume the one they get)."""
    return dict(source) if isinstance(source, dict) else source
