"""Prompt weighting for SDXL (`prompt_weighting: true`): the `(word:1.3)` syntax users write (Automatic1111's)
turned into compel's `(word)1.3`, and a check of the parentheses before anything parses them (compel's parser takes
exponential time on unbalanced ones, seconds at 6 and minutes at 8, and recurses past Python's limit on deep ones)."""
from __future__ import annotations

import re

from models.errors import InvalidRequest

MAX_DEPTH = 4  # ((((word)))) is 1.1⁴ already: deeper nesting is a typo or an attack
_WEIGHTED = re.compile(r"\(([^():]+):\s*([0-9]*\.?[0-9]+)\s*\)")


def compel_syntax(prompt: str) -> str:
    """`a (red:1.3) fox` → `a (red)1.3 fox`; compel's own syntax (`(red)1.3`, `red++`) passes unchanged."""
    return _WEIGHTED.sub(r"(\1)\2", prompt)


def check_weighting(prompt: str, field: str) -> None:
    """`InvalidRequest` naming `field` when the prompt's (unescaped) parentheses do not pair up or nest deeper than
    `MAX_DEPTH`."""
    depth, escaped = 0, False
    for char in prompt:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidRequest(field, f"prompt_weighting: parentheses nest deeper than {MAX_DEPTH}")
        elif char == ")":
            depth -= 1
            if depth < 0:
                break
    if depth:
        raise InvalidRequest(field, "prompt_weighting: unbalanced parentheses (escape a literal one as \\( or \\))")
