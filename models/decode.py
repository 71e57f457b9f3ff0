"""The LLM decode engine: continuous batching over one static KV cache, a fixed-shape one-token step.

`slots` rows share a transformers `StaticCache` of `context` columns and one write column `t`: every step writes
each row's next token at `t`, so the step's shapes never change (compiled once; CUDA graphs with
`mode="reduce-overhead"`). A request joins at a token boundary: its prompt is prefilled alone (batch 1) and copied
into a free row just left of `t`; it leaves when its grammar stops, its token budget or time limit is reached, or it
is cancelled; a row's own attention mask hides every other column, and positions count from its own start, so a
request decodes the same text batched or alone. When `t` reaches the end, every row shifts left by the oldest row's
start (admission keeps every row's worst case inside the cache).

Each row has its own llguidance matcher (the mask is unpacked and applied on the device), temperature and seed (its
own generator: the same seed draws the same noise batched or alone). The step's only host sync is reading the
sampled tokens back for the matchers. Waiting requests are admitted by lane rank, then their user's running rows,
then arrival, as the diffusion replicas admit jobs.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch
from llguidance import LLMatcher
from llguidance.torch import fill_next_token_bitmask
from transformers.cache_utils import Cache, StaticLayer

BITS = 32  # llguidance packs a token mask as int32 words


class WindowLayer(StaticLayer):
    """A static cache layer written for the step's first rows, whose attention reads only `window`'s columns (an
    eager step runs up to the last busy row, from the oldest row's start to `t`; a compiled step runs every row and
    column, its shapes fixed)."""

    window = slice(None)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        rows, length = key_states.shape[0], key_states.shape[-2]
        positions = torch.arange(length, device=self.device) + self.cumulative_length
        self.cumulative_length.add_(length)
        self.keys[:rows].index_copy_(2, positions, key_states)
        self.values[:rows].index_copy_(2, positions, value_states)
        return self.keys[:rows, :, self.window], self.values[:rows, :, self.window]


@dataclass(eq=False)
class Sequence:
    """One request in the engine: prompt tokens, grammar, sampling, limits and where its answer goes.
    `on_token(ids)` sees the answer's tokens so far after each step (streaming)."""

    prompt: list[int]
    matcher: LLMatcher
    max_new_tokens: int
    temperature: float = 0.0
    seed: int = 0
    deadline: float = float("inf")  # time.monotonic() past which it stops, cut short
    lane_rank: int = 1
    user: str = ""
    on_token: Callable[[list[int]], None] | None = None
    result: Future = field(default_factory=Future)  # (answer tokens, grammar accepted them all)
    tokens: list[int] = field(default_factory=list)
    order: int = 0
    row: int = -1
    start: int = 0  # its first cache column
    cancelled: bool = False
    generator: torch.Generator | None = None
    peak: int = 1  # the most rows that decoded in one step with it (itself included)

    @property
    def span(self) -> int:
        """Cache columns it may need at most."""
        return len(self.prompt) + self.max_new_tokens


class DecodeEngine:
    """`submit(sequence)` → its `result` future; one background thread decodes every admitted sequence together."""

    def __init__(self, model: torch.nn.Module, eos_token_id: int, slots: int, context: int,
                 compile_mode: str | None = None) -> None:
        self.model, self.eos, self.slots, self.context = model, eos_token_id, slots, context
        self.device = next(model.parameters()).device
        self.vocab = model.config.vocab_size
        config = model.config
        self.cache = Cache(layers=[WindowLayer(context) for _ in range(config.num_hidden_layers)])
        self.compiled = compile_mode is not None
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        with torch.inference_mode():
            self.cache.early_initialization(slots, config.num_key_value_heads, head_dim, model.dtype, self.device)
        self.valid = torch.zeros(slots, context, dtype=torch.bool, device=self.device)  # columns each row attends
        self.inputs = torch.zeros(slots, 1, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(slots, 1, dtype=torch.long, device=self.device)
        words = -(-self.vocab // BITS)
        self.bitmask = torch.full((slots, words), -1, dtype=torch.int32,
                                  pin_memory=self.device.type == "cuda")
        self.bit_shifts = torch.arange(BITS, dtype=torch.int32, device=self.device)
        self.t = 0
        self.rows: list[Sequence | None] = [None] * slots
        self.waiting: list[Sequence] = []
        self.orders = itertools.count()
        self.lock = threading.Condition()
        self.forward = torch.compile(self._forward, mode=compile_mode, fullgraph=True) if compile_mode else \
            self._forward
        self.thread: threading.Thread | None = None
        self.limit = slots  # rows that may decode at once (at most `slots`)
        self.steps = self.shifts = 0  # decode steps run (each one forward of every row), cache shifts

    # -- the public side (any thread)

    def submit(self, sequence: Sequence) -> Future:
        if sequence.span > self.context:
            raise ValueError(f"prompt: {len(sequence.prompt)} tokens and up to {sequence.max_new_tokens} new ones "
                             f"exceed the LLM context of {self.context} tokens")
        sequence.generator = torch.Generator(self.device).manual_seed(sequence.seed)
        with self.lock:
            sequence.order = next(self.orders)
            self.waiting.append(sequence)
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="decode-engine", daemon=True)
                self.thread.start()
            self.lock.notify()
        return sequence.result

    def cancel(self, sequence: Sequence) -> None:
        """Stops it at the next token boundary; its future is cancelled, the other rows decode on."""
        with self.lock:
            sequence.cancelled = True
            self.lock.notify()

    def active(self) -> int:
        return sum(row is not None for row in self.rows)

    @torch.inference_mode()
    def warmup(self) -> None:
        """Steps with every row free: compiles (and on CUDA captures) the step before any request."""
        for _ in range(3 if self.device.type == "cuda" else 1):  # reduce-overhead records on its later calls
            self._step()
        self.t = 0

    # -- the engine thread

    @torch.inference_mode()
    def _loop(self) -> None:
        while True:
            with self.lock:
                self._drop_cancelled()
                while not self.waiting and not self.active():
                    self.lock.wait()
                    self._drop_cancelled()
                joining = self._admit()
            try:
                for sequence in joining:
                    self._join(sequence)
                if self.active():
                    self._advance()
            except Exception as error:  # every running and joining request fails with it; the engine goes on
                for row, sequence in enumerate(self.rows):
                    if sequence is not None:
                        self._leave(row, error=error)

    def _drop_cancelled(self) -> None:
        for sequence in [s for s in self.waiting if s.cancelled]:
            self.waiting.remove(sequence)
            sequence.result.cancel()
        for row, sequence in enumerate(self.rows):
            if sequence is not None and sequence.cancelled:
                self._leave(row, cancel=True)

    def _admit(self) -> list[Sequence]:
        """The waiting sequences that take the free rows now, best first; each must fit the cache beside the rows
        already running (a later shift can always make room for every row's worst case)."""
        running = Counter(s.user for s in self.rows if s is not None)
        joining: list[Sequence] = []
        free = [row for row, s in enumerate(self.rows) if s is None][:max(0, self.limit - self.active())]
        while free and self.waiting:
            best = min(self.waiting, key=lambda s: (s.lane_rank, running[s.user], s.order))
            if not self._fits(best, joining):
                break
            self.waiting.remove(best)
            best.row = free.pop(0)
            self.rows[best.row] = best
            running[best.user] += 1
            joining.append(best)
        return joining

    def _fits(self, sequence: Sequence, joining: list[Sequence]) -> bool:
        running = [s for s in self.rows if s is not None and s not in joining]
        t = max(self.t, max((len(s.prompt) for s in [*joining, sequence]), default=0))
        starts = [s.start + t - self.t for s in running] + [t - len(s.prompt) for s in [*joining, sequence]]
        ends = [s.start + t - self.t + s.span for s in running] + [t - len(s.prompt) + s.span
                                                                   for s in [*joining, sequence]]
        return max(ends) - min(starts) <= self.context

    def _join(self, sequence: Sequence) -> None:
        """Prefills its prompt alone and places it in its row, ending just left of `t`; samples its first token."""
        if len(sequence.prompt) > self.t:
            self._shift(len(sequence.prompt) - self.t)
        ids = torch.tensor([sequence.prompt], device=self.device)
        output = self.model(input_ids=ids, use_cache=True)
        start, row = self.t - len(sequence.prompt), sequence.row
        for layer, filled in zip(self.cache.layers, output.cache.layers, strict=True):
            layer.keys[row, :, start:self.t] = filled.keys[0]
            layer.values[row, :, start:self.t] = filled.values[0]
        self.valid[row] = False
        self.valid[row, start:self.t] = True
        sequence.start = start
        self.bitmask[row] = -1
        fill_next_token_bitmask(sequence.matcher, self.bitmask, row)
        logits = output.logits[:, -1].float()
        self._mask(logits, self.bitmask[row:row + 1])
        token = int(self._sample(logits, [sequence])[0])
        self._accept(row, token)

    def _advance(self) -> None:
        """One decode step of every row, then each row's token through its matcher."""
        if self.t >= self.context:
            self._shift(-min(s.start for s in self.rows if s is not None))
        tokens = self._step().tolist()  # the step's one host sync
        busy = self.active()
        for row, sequence in enumerate(self.rows):
            if sequence is not None:
                sequence.peak = max(sequence.peak, busy)
                self._accept(row, tokens[row])

    def _step(self) -> torch.Tensor:
        """Writes each row's last token at column `t` and samples each row's next one (free rows: garbage). A
        compiled step runs every row; an eager one the rows up to the last busy one."""
        busy = [row for row, s in enumerate(self.rows) if s is not None]
        n = self.slots if self.compiled else (busy[-1] + 1 if busy else 1)
        rows = self.rows[:n]
        for row, sequence in enumerate(rows):
            if sequence is None:
                self.bitmask[row] = -1
        self.inputs[:n].copy_(torch.tensor([[s.tokens[-1] if s else self.eos] for s in rows]), non_blocking=True)
        self.positions[:n].copy_(torch.tensor([[self.t - s.start if s else 0] for s in rows]), non_blocking=True)
        self.valid[:, self.t] = True
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(self.t)
        mask = self.bitmask[:n].to(self.device, non_blocking=True)
        window = slice(None) if self.compiled else slice(min((s.start for s in rows if s), default=0), self.t + 1)
        for layer in self.cache.layers:
            layer.window = window
        logits = self.forward(self.inputs[:n], self.positions[:n], self.valid[:n, None, None, window])
        self._mask(logits, mask)
        self.t += 1
        self.steps += 1
        return self._sample(logits, rows).cpu()

    def _forward(self, inputs: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        output = self.model(input_ids=inputs, position_ids=positions, attention_mask={"full_attention": mask},
                            cache=self.cache, use_cache=True)
        return output.logits[:, -1].float()

    def _mask(self, logits: torch.Tensor, bitmask: torch.Tensor) -> None:
        """Forbidden tokens to -inf, on the logits' device."""
        bits = (bitmask.to(logits.device).unsqueeze(-1) >> self.bit_shifts) & 1
        allowed = bits.flatten(1)[:, : logits.shape[-1]].bool()
        logits.masked_fill_(~allowed, float("-inf"))

    def _sample(self, logits: torch.Tensor, sequences: list[Sequence | None]) -> torch.Tensor:
        """Greedy rows take the best token; sampling rows add Gumbel noise drawn from their own generator."""
        for row, sequence in enumerate(sequences):
            if sequence is not None and sequence.temperature > 0:
                uniform = torch.rand(logits.shape[-1], generator=sequence.generator, device=self.device)
                gumbel = -torch.log(-torch.log(uniform.clamp_(1e-20, 1.0)))
                logits[row] = logits[row] / sequence.temperature + gumbel
        return logits.argmax(-1)

    def _accept(self, row: int, token: int) -> None:
        """Feeds the row's new token to its matcher; the row leaves when the answer is over, else its next mask is
        computed."""
        sequence = self.rows[row]
        matcher = sequence.matcher
        if not matcher.consume_token(token) or matcher.is_error():
            self._leave(row)
            return
        if token != self.eos:
            sequence.tokens.append(token)
            if sequence.on_token:
                sequence.on_token(list(sequence.tokens))
        if (matcher.is_stopped() or len(sequence.tokens) >= sequence.max_new_tokens
                or time.monotonic() > sequence.deadline):
            self._leave(row)
            return
        fill_next_token_bitmask(sequence.matcher, self.bitmask, row)

    def _leave(self, row: int, cancel: bool = False, error: Exception | None = None) -> None:
        sequence, self.rows[row] = self.rows[row], None
        self.valid[row] = False
        if cancel:
            sequence.result.cancel()
        elif error is not None:
            sequence.result.set_exception(error)
        else:
            accepted = sequence.matcher.is_accepting() and not sequence.matcher.is_error()
            sequence.result.set_result((sequence.tokens, accepted))

    def _shift(self, by: int) -> None:
        """Moves every row's columns by `by` (left when negative); `t` moves with them."""
        self.shifts += 1
        for layer in self.cache.layers:
            layer.keys.copy_(layer.keys.roll(by, dims=2))
            layer.values.copy_(layer.values.roll(by, dims=2))
        self.valid.copy_(self.valid.roll(by, dims=1))
        if by > 0:
            self.valid[:, :by] = False
        else:
            self.valid[:, self.context + by:] = False
        for sequence in self.rows:
            if sequence is not None:
                sequence.start += by
        self.t += by
