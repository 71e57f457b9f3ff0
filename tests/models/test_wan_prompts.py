"""Wan's UMT5 prompt embeddings cached by prompt text for the replica's lifetime: a repeated prompt (a storyboard's
scenes, a retry) skips the text encoder and renders the same frames; the cache keeps its most recent prompts."""
import numpy as np

import helpers
from config.families import WanArgs
from models.types import VideoRequest
from models.wan import Wan


def _request(prompt: str, seed: int = 1) -> VideoRequest:
    return VideoRequest(image=helpers.png(40, 48, 0), prompt=prompt, width=64, height=64, steps=2, guidance=5.0,
                        seed=seed, num_frames=5, fps=16)


def test_a_repeated_prompt_skips_the_text_encoder_and_gives_the_same_frames():
    wan = Wan(WanArgs(prompt_cache=2))
    encoded: list[int] = []  # prompts per text-encoder forward
    wan.pipe.text_encoder.register_forward_hook(lambda _m, args, _o: encoded.append(len(args[0])))
    first = wan.run([_request("a fox")])
    assert encoded == [1, 1]  # the prompt, then the negative prompt ""
    again = wan.run([_request("a fox")])
    assert encoded == [1, 1] and np.array_equal(first, again)
    wan.run([_request("a fox", seed=2), _request("a boat", seed=2)])  # only the new prompt is encoded, but with
    assert encoded == [1, 1, 1, 1]  # two kept, it pushed out the least recent, "" (encoded again, "a fox" out)
    assert list(wan._embeddings) == ["a boat", ""]
    wan.run([_request("a fox")])
    assert encoded == [1, 1, 1, 1, 1]


def test_no_cache_encodes_every_call():
    wan = Wan(WanArgs(prompt_cache=0))
    encoded: list[int] = []
    wan.pipe.text_encoder.register_forward_hook(lambda *_: encoded.append(1))
    for _ in range(2):
        wan.embeddings(["a fox"])
    assert len(encoded) == 2 and not wan._embeddings
