"""What the LLM family asks its engine, and the local engine: chats templated and tokenized for the decode engine
(`models.decode`), answers detokenized (text so far streamed to a callback)."""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import PreTrainedTokenizerBase

from models.constrained import Grammars
from models.decode import DecodeEngine, Sequence


class Answer(Future):
    """The future of an answer's text (None when the time limit cut it short); once done, `batch` is the most
    requests it was answered beside (itself included)."""

    batch: int = 1


@dataclass
class Ask:
    """One question for the model: the chat, the answer's grammar (llguidance, local decoding) and JSON schema (an
    endpoint's `response_format`), and how an endpoint's JSON becomes the answer text the grammar would give."""

    conversation: list[dict[str, str]]
    grammar: str
    schema: dict[str, Any]
    from_json: Callable[[Any], str]
    max_new_tokens: int
    prefix: str = ""  # the answer's given start (not part of the answer text)
    temperature: float = 0.0
    seed: int = 0


class Engine(Protocol):
    limit: int  # requests answered at once

    def warmup(self) -> None: ...

    def submit(self, ask: Ask, lane_rank: int, user: str, on_text: Callable[[str], None] | None) -> Answer: ...

    def cancel(self, answer: Answer) -> None: ...


class LocalEngine:
    """Asks → the decode engine's sequences → answer texts."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, grammars: Grammars, slots: int,
                 context: int, compile_mode: str | None, timeout_s: float) -> None:
        self.tokenizer, self.grammars, self.timeout_s = tokenizer, grammars, timeout_s
        self.decode = DecodeEngine(model, tokenizer.eos_token_id, slots, context, compile_mode)
        self._sequences: dict[Answer, Sequence] = {}

    @property
    def limit(self) -> int:
        return self.decode.limit

    @limit.setter
    def limit(self, size: int) -> None:
        self.decode.limit = min(size, self.decode.slots)

    def warmup(self) -> None:
        self.decode.warmup()

    def submit(self, ask: Ask, lane_rank: int = 1, user: str = "",
               on_text: Callable[[str], None] | None = None) -> Answer:
        text = self.tokenizer.apply_chat_template(ask.conversation, add_generation_prompt=True, tokenize=False)
        prompt = self.tokenizer(text + ask.prefix, add_special_tokens=False)["input_ids"]
        sequence = Sequence(prompt, self.grammars.matcher(ask.grammar), ask.max_new_tokens, ask.temperature,
                            ask.seed, time.monotonic() + self.timeout_s, lane_rank, user,
                            (lambda ids: on_text(self.tokenizer.decode(ids))) if on_text else None)
        answer = Answer()
        self._sequences[answer] = sequence
        answer.add_done_callback(lambda _: self._sequences.pop(answer, None))

        def settle(done: Future) -> None:
            if done.cancelled():
                answer.cancel()
            elif done.exception() is not None:
                answer.set_exception(done.exception())
            else:
                tokens, accepted = done.result()
                answer.batch = sequence.peak
                answer.set_result(self.tokenizer.decode(tokens, skip_special_tokens=True) if accepted else None)

        self.decode.submit(sequence).add_done_callback(settle)
        return answer

    def cancel(self, answer: Answer) -> None:
        if (sequence := self._sequences.get(answer)) is not None:
            self.decode.cancel(sequence)
