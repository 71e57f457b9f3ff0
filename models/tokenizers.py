"""Tokenizers generated locally (no hub): byte-level, so any prompt in any language maps to real ids; and
`OneAtATime`, a tokenizer that threads share."""
from __future__ import annotations

import functools
import threading
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_level(
    specials: list[str],
    max_length: int,
    *,
    bos: str | None = None,
    eos: str | None = None,
    pad: str | None = None,
    unk: str | None = None,
    chat_template: str | None = None,
    wrap: bool = True,
) -> PreTrainedTokenizerFast:
    """Specials take ids 0..k-1, then one id per byte; `wrap` adds BOS/EOS around every text."""
    vocab = {token: index for index, token in enumerate(specials)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):  # a set: unsorted, ids would differ per process
        vocab.setdefault(char, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    if wrap:
        single = " ".join(part for part in (bos and f"{bos}:0", "$A:0", eos and f"{eos}:0") if part)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=single, special_tokens=[(token, vocab[token]) for token in (bos, eos) if token]
        )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=max_length,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        additional_special_tokens=[t for t in specials if t not in (bos, eos, pad, unk)],
    )
    if chat_template:
        wrapped.chat_template = chat_template
    return wrapped


def clip(max_length: int = 77) -> PreTrainedTokenizerFast:
    """CLIP layout: bos 0, eos 1, pad 2 (matches the text configs built in this package)."""
    return byte_level(["<|startoftext|>", "<|endoftext|>", "<pad>"], max_length,
                      bos="<|startoftext|>", eos="<|endoftext|>", pad="<pad>")


def t5(max_length: int = 512) -> PreTrainedTokenizerFast:
    """T5/UMT5 layout: pad 0, eos 1, unk 2."""
    return byte_level(["<pad>", "</s>", "<unk>"], max_length, eos="</s>", pad="<pad>", unk="<unk>")


def qwen(max_length: int = 4096) -> PreTrainedTokenizerFast:
    """Qwen2 chat layout: <|endoftext|> pads, <|im_end|> ends a turn."""
    tokenizer = byte_level(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], max_length,
                           eos="<|im_end|>", pad="<|endoftext|>", chat_template=QWEN_CHAT_TEMPLATE, wrap=False)
    tokenizer.padding_side = "left"
    return tokenizer


def bert(max_length: int = 128) -> PreTrainedTokenizerFast:
    """BERT layout for the tiny embedder: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3."""
    return byte_level(["[PAD]", "[UNK]", "[CLS]", "[SEP]"], max_length, bos="[CLS]", eos="[SEP]",
                      pad="[PAD]", unk="[UNK]")


_TOKENIZING = threading.RLock()


class OneAtATime:
    """A tokenizer that threads share, its calls one at a time. A fast tokenizer's call sets padding and truncation
    on the Rust tokenizer, then encodes with the GIL released: diffusers' pipelines call theirs twice per prompt with
    two settings (padded to the maximum length, then to the longest), so two calls at once (FLUX's text-to-image and
    edit threads, fused groups joining one turn) encode with each other's settings, i.e. other prompt embeddings.
    It reports the tokenizer's class (as `unittest.mock`'s spec'd mocks do), so diffusers still registers, saves and
    checks it as the tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self.tokenizer)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with _TOKENIZING:
            return self.tokenizer(*args, **kwargs)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy and pickle probe dunders before `tokenizer` is set
            raise AttributeError(name)
        value = getattr(self.tokenizer, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def locked(*args: Any, **kwargs: Any) -> Any:
            with _TOKENIZING:
                return value(*args, **kwargs)

        return locked


def one_at_a_time(*pipes: Any) -> None:
    """Every tokenizer of these pipelines (`tokenizer`, `tokenizer_2`, ...) behind one lock; set in the pipeline's
    `__dict__`, its config unchanged."""
    for pipe in pipes:
        for name, value in list(vars(pipe).items()):
            if isinstance(value, PreTrainedTokenizerBase) and type(value) is not OneAtATime:
                vars(pipe)[name] = OneAtATime(value)
