"""Qwen2.5-instruct prompt model: prompt optimisation and script → storyboard JSON.

LLM output is never trusted: every answer is validated, and a deterministic template answers instead when
validation fails (random-weight sources always take that path, which is why both paths are tested)."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence

import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from config.families import LLMArgs, Source
from models import tokenizers
from models.runtime import Family, build, chunks
from models.types import OptimizedPrompt, PromptRequest, Scene, Storyboard, StoryboardRequest

_TINY = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
_FULL = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
             num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1_000_000.0,
             rms_norm_eps=1e-6, tie_word_embeddings=True)
ARCHITECTURES = {Source.TINY: _TINY, Source.RANDOM: _FULL}

MODE_INSTRUCTIONS = {
    "general": "Rewrite the prompt so an image model renders it clearly: subject, setting, lighting, detail.",
    "artistic": "Rewrite the prompt as an artwork description: medium, artist-like style, palette, composition.",
    "cinematic": "Rewrite the prompt as a film still: lens, shot type, lighting setup, mood, colour grade.",
}
TARGET_HINT = {"image": "The result is a single image.", "video": "The result is a short video: describe motion."}
MODE_SUFFIX = {
    "general": "highly detailed, sharp focus, balanced lighting",
    "artistic": "painterly style, rich colour palette, expressive brushwork, artful composition",
    "cinematic": "cinematic film still, 35mm lens, dramatic lighting, shallow depth of field, colour graded",
}
TARGET_SUFFIX = {"image": "", "video": ", smooth natural motion, steady camera"}
STORYBOARD_SYSTEM = (
    "You are a storyboard artist. Answer only JSON: {\"scenes\": [{\"description\": str, \"shot_type\": one of "
    "wide|medium|close-up|extreme close-up|over-the-shoulder|aerial, \"camera_move\": one of static|pan|tilt|dolly|"
    "tracking|crane|handheld|zoom, \"duration_s\": number, \"visual_style\": str}]}"
)
FALLBACK_SHOTS = ("wide", "medium", "close-up", "aerial", "over-the-shoulder", "extreme close-up")
FALLBACK_MOVES = ("dolly", "pan", "static", "crane", "tracking", "zoom")
FALLBACK_BEATS = ("establishing view of", "first encounter within", "rising tension in", "turning point of",
                  "climax of", "quiet resolution of")
_PREFIX = re.compile(r"^(optimi[sz]ed prompt|prompt|rewritten prompt)\s*:\s*", re.I)


def load(args: LLMArgs, device: torch.device, dtype: torch.dtype):
    """(model, tokenizer) for any source; generated tokenizers for tiny and random."""
    if args.source is Source.PRETRAINED:
        tokenizer = AutoTokenizer.from_pretrained(args.model_id, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(args.model_id, dtype=dtype).to(device).eval()
        return model, tokenizer
    tokenizer = tokenizers.qwen()
    arch = dict(ARCHITECTURES[args.source])
    arch.setdefault("vocab_size", len(tokenizer))
    config = Qwen2Config(**arch, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return build(lambda: Qwen2ForCausalLM(config), device, dtype), tokenizer


def clean_prompt(text: str, original: str) -> str | None:
    """The first line of an answer, if it reads as a usable prompt; None otherwise."""
    line = _PREFIX.sub("", text.strip().split("\n", 1)[0]).strip().strip("\"'").strip()
    if not 8 <= len(line) <= 600:
        return None
    readable = sum(ch.isalnum() or ch.isspace() or ch in ",.;:'-!?()" for ch in line)
    if readable / len(line) < 0.9:
        return None
    words = {w.lower() for w in re.findall(r"\w{3,}", original)}
    if words and not words & {w.lower() for w in re.findall(r"\w{3,}", line)}:
        return None  # an answer that drops every content word of the request is about something else
    return line


def template_prompt(request: PromptRequest) -> str:
    """Deterministic enrichment used when the LLM answer fails validation."""
    return f"{request.prompt.rstrip(' .,')}, {MODE_SUFFIX[request.mode]}{TARGET_SUFFIX[request.target]}"


def parse_scenes(text: str, request: StoryboardRequest) -> list[Scene] | None:
    """Scenes from the first JSON object or array in `text`, exactly `num_scenes` valid ones, else None."""
    match = re.search(r"[\[{].*[\]}]", text, re.S)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
        items = data.get("scenes") if isinstance(data, dict) else data
        scenes = [Scene.model_validate(item) for item in items]
    except (ValueError, TypeError, AttributeError, ValidationError):
        return None
    return scenes[: request.num_scenes] if len(scenes) >= request.num_scenes else None


def template_scenes(request: StoryboardRequest) -> list[Scene]:
    """Deterministic storyboard: script sentences spread over scenes, or story beats around the theme."""
    style = request.style or "cinematic, natural light"
    if request.script:
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", request.script) if s.strip()]
        per_scene = max(1, -(-len(sentences) // request.num_scenes))
        parts = [" ".join(sentences[i:i + per_scene]) for i in range(0, len(sentences), per_scene)]
        parts += [parts[-1]] * (request.num_scenes - len(parts))
    else:
        parts = [f"{FALLBACK_BEATS[i % len(FALLBACK_BEATS)]} {request.theme.strip()}"
                 for i in range(request.num_scenes)]
    return [
        Scene(description=part[:600].ljust(3, "."), shot_type=FALLBACK_SHOTS[i % len(FALLBACK_SHOTS)],
              camera_move=FALLBACK_MOVES[i % len(FALLBACK_MOVES)], duration_s=request.scene_seconds,
              visual_style=style)
        for i, part in enumerate(parts[: request.num_scenes])
    ]


class PromptLLM(Family):
    """`optimize(batch)` and `storyboard(request)` over a chat-templated causal LM (greedy decoding)."""

    name = "qwen"

    def __init__(self, args: LLMArgs, max_batch: int = 16) -> None:
        super().__init__(args)
        self.model, self.tokenizer = load(args, self.device, self.dtype)
        self.max_batch = max_batch

    def chat(self, conversations: Sequence[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
        """Greedy answers for a batch of conversations (left padded, so the batch does not change them)."""
        answers: list[str] = []
        for batch in chunks(conversations, self.max_batch):
            texts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in batch]
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                             pad_token_id=self.tokenizer.pad_token_id)
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            answers += self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return answers

    def optimize(self, requests: list[PromptRequest]) -> list[OptimizedPrompt]:
        started = time.perf_counter()
        conversations = [
            [{"role": "system", "content": f"{MODE_INSTRUCTIONS[r.mode]} {TARGET_HINT[r.target]} Answer with the "
                                           "prompt only."},
             {"role": "user", "content": r.prompt}]
            for r in requests
        ]
        answers = self.chat(conversations, self.args.max_new_tokens)
        meta = self.metadata(len(requests), started)
        results = []
        for request, answer in zip(requests, answers, strict=True):
            cleaned = clean_prompt(answer, request.prompt)
            results.append(OptimizedPrompt(prompt=request.prompt, optimized=cleaned or template_prompt(request),
                                           mode=request.mode, target=request.target, fallback=cleaned is None,
                                           metadata=meta))
        return results

    def storyboard(self, request: StoryboardRequest) -> Storyboard:
        started = time.perf_counter()
        source = f"Theme: {request.theme}" if request.theme else f"Script:\n{request.script}"
        ask = (f"{source}\nMake exactly {request.num_scenes} scenes of about {request.scene_seconds:g} s each"
               + (f", visual style: {request.style}." if request.style else "."))
        answer = self.chat([[{"role": "system", "content": STORYBOARD_SYSTEM}, {"role": "user", "content": ask}]],
                           self.args.storyboard_max_new_tokens)[0]
        scenes = parse_scenes(answer, request)
        return Storyboard(scenes=scenes or template_scenes(request), fallback=scenes is None,
                          metadata=self.metadata(1, started))
