"""Prompt weighting for SDXL (`prompt_weighting: true`): the `(word:1.3)` syntax users write (Automatic1111's)
turned into compel's `(word)1.3`, and a check that compel's parser can read a prompt (a deeply nested one makes it
recurse past Python's limit) before any compute."""
from __future__ import annotations

import re

from models.errors import InvalidRequest

_WEIGHTED = re.compile(r"\(([^():]+):\s*([0-9]*\.?[0-9]+)\s*\)")


def compel_syntax(prompt: str) -> str:
    """`a (red:1.3) fox` → `a (red)1.3 fox`; compel's own syntax (`(red)1.3`, `red++`) passes unchanged."""
    return _WEIGHTED.sub(r"(\1)\2", prompt)


def check_weighting(prompt: str, field: str) -> None:
    """`InvalidRequest` naming `field` when compel cannot read the prompt's weights."""
    from compel.prompt_parser import PromptParser

    try:
        PromptParser().parse_conjunction(compel_syntax(prompt))
    except RecursionError:
        raise InvalidRequest(field, "prompt_weighting: the weights nest too deeply to read") from None
