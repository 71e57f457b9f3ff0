"""The LLM as a decode engine against eager `generate`: `python -m bench.llm [--source random --device cuda]`.

Fixed-length decode (a grammar that refuses EOS until far past `--tokens`, so every request decodes exactly that
many tokens): tokens/s at batch 1 and aggregate at 1, 4 and 16 concurrent requests, first-token latency, for eager
`generate` (the requests one after another, as one replica served them) and the engine (all submitted at once,
joining the running decode). Then the CPU goal: 16 optimisation requests (the real grammar) one after another
against all 16 at once, on the same engine, with the same texts. `--out DIR` writes llm.json (the device runner:
`MONTAGE_BENCH=bench.llm bash bench/device/run.sh OUTDIR`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessorList

from config.families import LLMArgs, Source
from models.chat import Ask
from models.constrained import GrammarLogits, lark_grammar
from models.llm import LLM
from models.types import PromptRequest

PROMPT = "Write a long, vivid description of a lighthouse on a cliff during a storm at night."
CONCURRENCY = (1, 4, 16)


def fixed_ask(tokens: int, index: int = 0) -> Ask:
    """An ask that decodes exactly `tokens` tokens (EOS is refused for 8 characters per token)."""
    grammar = lark_grammar(f'start: /[a-zA-Z ,.]{{{8 * tokens},}}/')
    return Ask([{"role": "user", "content": f"{PROMPT} ({index})"}], grammar, {}, str, tokens)


def engine_run(llm: LLM, asks: list[Ask]) -> dict[str, float]:
    """All asks submitted at once: wall time, aggregate tok/s, median first-token latency."""
    firsts: list[float] = []
    lock = threading.Lock()
    started = time.perf_counter()

    def first(seen: list[bool]):
        def on_text(text: str) -> None:
            if not seen:
                seen.append(True)
                with lock:
                    firsts.append(time.perf_counter() - started)
        return on_text

    answers = [llm.submit(ask, on_text=first([])) for ask in asks]
    texts = [answer.result() for answer in answers]
    wall = time.perf_counter() - started
    del texts
    tokens = sum(ask.max_new_tokens for ask in asks)
    return dict(wall_s=wall, tok_s=tokens / wall, first_token_ms=statistics.median(firsts) * 1000.0)


def eager_run(llm: LLM, asks: list[Ask]) -> dict[str, float]:
    """`generate` with the grammar as a logits processor, one request after another."""
    firsts: list[float] = []
    started = time.perf_counter()
    for ask in asks:
        text = llm.tokenizer.apply_chat_template(ask.conversation, add_generation_prompt=True, tokenize=False)
        inputs = llm.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(llm.device)
        constraint = GrammarLogits([llm.grammars.matcher(ask.grammar)])
        one = time.perf_counter()
        with torch.inference_mode():
            llm.model.generate(**inputs, max_new_tokens=1, do_sample=False, logits_processor=LogitsProcessorList(
                [GrammarLogits([llm.grammars.matcher(ask.grammar)])]), pad_token_id=llm.tokenizer.pad_token_id)
            firsts.append(time.perf_counter() - one)
            llm.model.generate(**inputs, max_new_tokens=ask.max_new_tokens, min_new_tokens=ask.max_new_tokens,
                               do_sample=False, logits_processor=LogitsProcessorList([constraint]),
                               pad_token_id=llm.tokenizer.pad_token_id)
    wall = time.perf_counter() - started - sum(firsts)  # the first-token probes are not part of the run
    tokens = sum(ask.max_new_tokens for ask in asks)
    return dict(wall_s=wall, tok_s=tokens / wall, first_token_ms=statistics.median(firsts) * 1000.0)


def optimise_goal(llm: LLM, count: int = 16) -> dict[str, Any]:
    """`count` optimisation requests one after another, then all at once: time ratio and equal texts."""
    requests = [PromptRequest(prompt=f"a fox in the snow at dawn, study {i}") for i in range(count)]
    started = time.perf_counter()
    alone = [llm.optimize([request])[0].optimized for request in requests]
    sequential = time.perf_counter() - started
    started = time.perf_counter()
    together = [result.optimized for result in llm.optimize(requests)]
    concurrent = time.perf_counter() - started
    return dict(requests=count, sequential_s=sequential, concurrent_s=concurrent, speedup=sequential / concurrent,
                same_texts=alone == together)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="tiny", choices=[s.value for s in Source if s is not Source.PRETRAINED])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per request (default: 128, tiny 32)")
    parser.add_argument("--compile", action="store_true", help="compile the engine's step (CUDA: CUDA graphs)")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--budget-s", type=float, default=None, help="accepted for the device runner; unused")
    args = parser.parse_args(argv)
    tokens = args.tokens or (32 if args.source == "tiny" else 128)
    llm = LLM(LLMArgs(source=args.source, device=args.device, compile=args.compile, context=args.context,
                      max_new_tokens=32))
    llm.warmup()
    engine_run(llm, [fixed_ask(4)])  # first-call costs (grammar compilers, allocator) out of the timings
    eager_run(llm, [fixed_ask(4)])
    report: dict[str, Any] = dict(source=args.source, device=str(llm.device), compile=args.compile, tokens=tokens,
                                  threads=torch.get_num_threads(), rows=[])
    print(f"{args.source} on {llm.device}, {tokens} new tokens per request, compile={args.compile}")
    print(f"{'requests':>8} {'eager tok/s':>12} {'engine tok/s':>13} {'gain':>6} {'eager 1st ms':>13} "
          f"{'engine 1st ms':>14}")
    for count in CONCURRENCY:
        asks = [fixed_ask(tokens, i) for i in range(count)]
        eager, engine = eager_run(llm, asks), engine_run(llm, asks)
        row = dict(requests=count, eager=eager, engine=engine, gain=engine["tok_s"] / eager["tok_s"])
        report["rows"].append(row)
        print(f"{count:>8} {eager['tok_s']:>12.1f} {engine['tok_s']:>13.1f} {row['gain']:>5.1f}x "
              f"{eager['first_token_ms']:>13.1f} {engine['first_token_ms']:>14.1f}", flush=True)
    goal = optimise_goal(llm)
    report["optimise_16"] = goal
    print(f"16 optimisations: one after another {goal['sequential_s']:.2f} s, all at once {goal['concurrent_s']:.2f} s"
          f" ({goal['speedup']:.1f}x; goal >= 4x), same texts: {goal['same_texts']}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "llm.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
