"""Qwen2.5-instruct prompt model: prompt optimisation and script → storyboard JSON.

Every answer is decoded under a grammar (`models.constrained`): an optimised prompt is the user's prompt followed by
a bounded, readable enrichment; a storyboard is JSON of exactly the asked number of scenes with bounded fields. So
any model, random weights included, answers validly; a deterministic template answers only when the time limit
(`timeout_s`) cuts generation short, and results say so (`fallback`)."""
from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from typing import Any, get_args

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from config.families import LLMArgs, Source
from models import tokenizers
from models.chat import Answer, Ask, Engine, LocalEngine
from models.constrained import Grammars, json_grammar, lark_grammar
from models.endpoint import ChatEndpoint
from models.family import Family
from models.loading import build
from models.types import CameraMove, OptimizedPrompt, PromptRequest, Scene, ShotType, Storyboard, StoryboardRequest

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
    "tracking|crane|handheld|zoom, \"duration_s\": whole seconds, \"visual_style\": str}]}, in English."
)
# Decoded text is English prompt text (the image and video text encoders are English-trained), in bounded fields,
# so an answer's length is bounded in bytes and thus in tokens: generation never truncates a valid answer.
PROMPT_CHARS = r"[A-Za-z0-9 ,.;:'()!?-]"
DESCRIPTION_CHARS, STYLE_CHARS = 160, 48
_SCENE_OVERHEAD_BYTES = 160  # keys, quotes, separators, the longest shot type and camera move, two digits
FALLBACK_SHOTS = ("wide", "medium", "close-up", "aerial", "over-the-shoulder", "extreme close-up")
FALLBACK_MOVES = ("dolly", "pan", "static", "crane", "tracking", "zoom")
FALLBACK_BEATS = ("establishing view of", "first encounter within", "rising tension in", "turning point of",
                  "climax of", "quiet resolution of")


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


def enrichment_grammar(max_chars: int) -> str:
    """What follows the user's prompt in an optimised one: ", " and 8 to `max_chars` readable characters."""
    return lark_grammar(f'start: ", " /{PROMPT_CHARS}{{8,{max(8, max_chars)}}}/')


def storyboard_schema(num_scenes: int, scene_seconds: float) -> dict[str, Any]:
    """JSON schema of exactly `num_scenes` scenes, every field bounded; durations in whole seconds from half to
    one and a half times the asked scene length (at least 1 s: 1 s where no whole second is in that range)."""
    shortest = max(1, math.ceil(scene_seconds / 2))
    longest = min(30, max(shortest, math.floor(scene_seconds * 1.5)))
    text = {"type": "string", "pattern": f"^{PROMPT_CHARS}*$"}
    scene = {"type": "object", "additionalProperties": False,
             "required": ["description", "shot_type", "camera_move", "duration_s", "visual_style"],
             "properties": {"description": text | {"minLength": 3, "maxLength": DESCRIPTION_CHARS},
                            "shot_type": {"enum": list(get_args(ShotType))},
                            "camera_move": {"enum": list(get_args(CameraMove))},
                            "duration_s": {"type": "integer", "minimum": shortest, "maximum": longest},
                            "visual_style": text | {"minLength": 2, "maxLength": STYLE_CHARS}}}
    return {"type": "object", "additionalProperties": False, "required": ["scenes"],
            "properties": {"scenes": {"type": "array", "minItems": num_scenes, "maxItems": num_scenes,
                                      "items": scene}}}


def storyboard_tokens(num_scenes: int) -> int:
    """An upper bound on a storyboard answer's tokens: its bytes (every token is at least one byte), plus EOS."""
    return num_scenes * (DESCRIPTION_CHARS + STYLE_CHARS + _SCENE_OVERHEAD_BYTES) + 16


def template_prompt(request: PromptRequest) -> str:
    """Deterministic enrichment used when the LLM answer fails validation."""
    return f"{request.prompt.rstrip(' .,')}, {MODE_SUFFIX[request.mode]}{TARGET_SUFFIX[request.target]}"


def parse_scenes(text: str) -> list[Scene]:
    """Scenes of a storyboard answer that its grammar accepted."""
    return [Scene.model_validate(item) for item in json.loads(text)["scenes"]]


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


def enrichment_schema(max_chars: int) -> dict[str, Any]:
    """The endpoint's form of `enrichment_grammar`: {"enrichment": 8 to `max_chars` readable characters}."""
    return {"type": "object", "additionalProperties": False, "required": ["enrichment"],
            "properties": {"enrichment": {"type": "string", "pattern": f"^{PROMPT_CHARS}{{8,{max(8, max_chars)}}}$"}}}


class LLM(Family):
    """`optimize(requests)` and `storyboard(request)`, or their `Ask`s for the deployment to submit one by one: a
    chat-templated causal LM decoded by the continuous-batching engine (`models.decode`), or, with `endpoint`, an
    OpenAI-compatible server (`models.endpoint`)."""

    name = "llm"

    def __init__(self, args: LLMArgs) -> None:
        super().__init__(args)
        if args.endpoint is not None:
            self.engine: Engine = ChatEndpoint(args.endpoint, args.slots, args.timeout_s)
            return
        self.model, self.tokenizer = load(args, self.device, self.dtype)
        self.grammars = Grammars(self.tokenizer, self.model.config.vocab_size)
        compile_mode = ("reduce-overhead" if self.device.type == "cuda" else "default") if args.compile else None
        self.engine = LocalEngine(self.model, self.tokenizer, self.grammars, args.slots, args.context, compile_mode,
                                  args.timeout_s)

    def warmup(self) -> None:
        """The engine's step compiled (and captured) for its one shape; an endpoint's model checked to be served."""
        self.engine.warmup()

    def submit(self, ask: Ask, lane_rank: int = 1, user: str = "",
               on_text: Callable[[str], None] | None = None) -> Answer:
        """Its answer's future (text, or None when the time limit cut it short); `on_text` sees the text so far."""
        return self.engine.submit(ask, lane_rank, user, on_text)

    def optimize_ask(self, request: PromptRequest) -> Ask:
        conversation = [
            {"role": "system", "content": f"{MODE_INSTRUCTIONS[request.mode]} {TARGET_HINT[request.target]} Answer "
                                          "with the prompt only."},
            {"role": "user", "content": request.prompt}]
        limit = self.args.max_new_tokens
        return Ask(conversation, enrichment_grammar(limit), enrichment_schema(limit),
                   lambda answer: f", {answer['enrichment']}", limit, _trimmed(request.prompt),
                   request.temperature, request.seed)

    def optimized(self, request: PromptRequest, answer: str | None, started: float) -> OptimizedPrompt:
        """The user's prompt, enriched by the model's answer (the template's when there is none)."""
        return OptimizedPrompt(prompt=request.prompt, optimized=f"{_trimmed(request.prompt)}{answer}"
                               if answer is not None else template_prompt(request), mode=request.mode,
                               target=request.target, fallback=answer is None, metadata=self.metadata(1, started))

    def storyboard_ask(self, request: StoryboardRequest) -> Ask:
        source = f"Theme: {request.theme}" if request.theme else f"Script:\n{request.script}"
        ask = (f"{source}\nMake exactly {request.num_scenes} scenes of about {request.scene_seconds:g} s each"
               + (f", visual style: {request.style}." if request.style else "."))
        schema = storyboard_schema(request.num_scenes, request.scene_seconds)
        return Ask([{"role": "system", "content": STORYBOARD_SYSTEM}, {"role": "user", "content": ask}],
                   json_grammar(schema), schema, lambda answer: json.dumps(answer, separators=(",", ":")),
                   storyboard_tokens(request.num_scenes), temperature=request.temperature, seed=request.seed)

    def storyboarded(self, request: StoryboardRequest, answer: str | None, started: float) -> Storyboard:
        scenes = parse_scenes(answer) if answer is not None else template_scenes(request)
        return Storyboard(scenes=scenes, fallback=answer is None, metadata=self.metadata(1, started))

    def optimize(self, requests: list[PromptRequest]) -> list[OptimizedPrompt]:
        """All decoded together (blocking)."""
        started = time.perf_counter()
        answers = [self.submit(self.optimize_ask(request)) for request in requests]
        return [self.optimized(request, answer.result(), started)
                for request, answer in zip(requests, answers, strict=True)]

    def storyboard(self, request: StoryboardRequest) -> Storyboard:
        started = time.perf_counter()
        return self.storyboarded(request, self.submit(self.storyboard_ask(request)).result(), started)


def _trimmed(prompt: str) -> str:
    return prompt.strip().rstrip(" .,")
