"""Grammar-constrained decoding (llguidance): at every step a request's grammar masks the tokens it cannot take
next, so any model, random weights included, emits text the grammar accepts. One grammar per row of a batch."""
from __future__ import annotations

from typing import Any

import llguidance
import llguidance.hf
import numpy as np
import torch
from llguidance import LLMatcher
from transformers import LogitsProcessor, PreTrainedTokenizerFast


def json_grammar(schema: dict[str, Any]) -> str:
    """A JSON schema as a grammar with compact separators, so bounded fields bound the whole output."""
    return LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})


def lark_grammar(lark: str) -> str:
    return LLMatcher.grammar_from_lark(lark)


class Grammars:
    """The tokenizer's view for llguidance (built once per model) and a matcher per request."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, vocab_size: int) -> None:
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)

    def matcher(self, grammar: str) -> LLMatcher:
        matcher = LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(f"grammar: {matcher.get_error()}")
        return matcher


class GrammarLogits(LogitsProcessor):
    """For eager `generate` (bench.llm's baseline; the engine masks on the device itself): feeds each row's last
    token to its matcher, then masks what the matcher forbids; finished rows are left alone (generate pads them)."""

    def __init__(self, matchers: list[LLMatcher]) -> None:
        self.matchers = matchers
        self.started = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, matcher in enumerate(self.matchers):
            if self.started and not matcher.is_stopped():
                matcher.consume_token(int(input_ids[row, -1]))
            bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), np.uint8), bitorder="little")
            allowed = torch.from_numpy(bits[: scores.shape[-1]].astype(bool)).to(scores.device)
            scores[row].masked_fill_(~allowed, float("-inf"))
        self.started = True
        return scores
