"""Near-duplicate prompt matching, pure (no Redis, no Ray).

Two prompts are duplicates when their normalised text is equal, or when their embedding cosine reaches
`DEFAULT_THRESHOLD` and `salient_conflict` finds no detail (colour, count, subject, ...) that differs.
Candidates for the cosine check are a scope's nearest prompts in its vector set (composition/store/prompt_index.py).
Tuned on tests/data/prompt_pairs.jsonl with all-MiniLM-L6-v2: `python -m bench.dedup`.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

from composition.dedup.lexicons import (
    ACTIONS,
    COLOURS,
    IRREGULAR_PLURALS,
    MATERIALS,
    MEDIA,
    NEGATION_SKIP,
    NEGATORS,
    NUMBER_WORDS,
    OBJECTS,
    PLACES,
    QUANTIFIERS,
    SEASONS,
    SUBJECTS,
    TIMES_OF_DAY,
    WEATHER,
    WORLD_CITIES,
)

DEFAULT_THRESHOLD = 0.80

_APOSTROPHES = frozenset("'’‘ʼ`´")


def normalize_prompt(text: str) -> str:
    """NFKC, casefold, apostrophes dropped ("don't" → "dont"), other punctuation and symbols to spaces.

    Letters (any script, CJK included), combining marks and digits are kept; whitespace is collapsed.
    """
    text = unicodedata.normalize("NFKC", text).casefold().replace("&", " and ")
    kept = (ch if unicodedata.category(ch)[0] in "LMN" else " " for ch in text if ch not in _APOSTROPHES)
    return " ".join("".join(kept).split())


def _landmarks() -> dict[str, tuple[str, ...]]:
    """The catalogue's landmark names ("Spanish Steps", "Colosseum"): places of their own."""
    from composition.catalogue import load_catalogue

    return {normalize_prompt(landmark.name): () for city in load_catalogue().cities.values()
            for landmark in city.landmarks}


def _cities() -> dict[str, tuple[str, ...]]:
    """Cities and countries (the catalogue's, "Rome", "Japan", and `WORLD_CITIES`): places, so "in Paris" never
    merges with "in Tokyo"."""
    from composition.catalogue import load_catalogue

    cities = load_catalogue().cities.values()
    return {normalize_prompt(name): () for name in (*(n for c in cities for n in (c.name, c.country)), *WORLD_CITIES)}


CATEGORIES = ("colour", "count", "subject", "material", "time_of_day", "negation", "medium", "weather", "season",
              "landmark", "place", "action", "object")
# Often implied rather than said ("an owl on a branch" is sitting, "a samurai with a sword" holds it): these
# conflict only when both prompts name one.
IMPLICIT = frozenset({"action", "object"})
_LEXICONS = {"colour": COLOURS, "subject": SUBJECTS, "material": MATERIALS, "time_of_day": TIMES_OF_DAY,
             "medium": MEDIA, "weather": WEATHER, "season": SEASONS, "landmark": _landmarks(),
             "place": PLACES | _cities(),
             "action": ACTIONS, "object": OBJECTS}
_PHRASES: dict[tuple[str, ...], tuple[str, str]] = {
    tuple(form.split()): (category, canonical)
    for category, lexicon in _LEXICONS.items()
    for canonical, forms in lexicon.items()
    for form in (canonical, *forms)
}
_LONGEST = max(map(len, _PHRASES))


def _stems(word: str) -> list[str]:
    """Candidate singulars of a regular plural ("puppies" → "puppy", "foxes" → "fox", "cats" → "cat")."""
    if not word.endswith("s") or word.endswith("ss"):
        return []
    return [word[:-1]] + [word[:-2]] * word.endswith("es") + [word[:-3] + "y"] * word.endswith("ies")


def _match(tokens: list[str], start: int) -> tuple[int, str, str, bool] | None:
    """Longest lexicon phrase at `start`: (length, category, canonical, is a plural subject)."""
    for length in range(min(_LONGEST, len(tokens) - start), 0, -1):
        words = tuple(tokens[start:start + length])
        if words in _PHRASES:
            return length, *_PHRASES[words], words[-1] in IRREGULAR_PLURALS
        for stem in _stems(words[-1]):
            hit = _PHRASES.get((*words[:-1], stem))
            if hit and hit[0] == "subject":
                return length, *hit, True
    return None


def _lemma(word: str) -> str:
    """Subject canonical, else the word without a plural "s", so "no people" = "without humans"."""
    hit = _match([word], 0)
    if hit and hit[1] == "subject":
        return hit[2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


@lru_cache(maxsize=4096)
def salient_details(prompt: str) -> Mapping[str, frozenset]:
    """Canonical details per category (read-only). English vocabulary; other scripts yield empty sets.

    count is the set of numbers mentioned ("a pair" → 2, "single" → 1; "a"/"an" are not numbers); without
    one it is {"many"} for a plural subject or a quantifier ("dogs", "several"), else {1}, so "a dog" vs
    "two dogs" vs "dogs" all differ. negation holds the word each negator applies to ("without a hat",
    "with no hats" → {"hat"}).
    """
    tokens = normalize_prompt(prompt).split()
    found: dict[str, set] = {category: set() for category in CATEGORIES}
    plural, start = False, 0
    while start < len(tokens):
        token = tokens[start]
        if token in NEGATORS:
            target = next((word for word in tokens[start + 1:] if word not in NEGATION_SKIP), None)
            if target:
                found["negation"].add(_lemma(target))
        hit = _match(tokens, start)
        if hit:
            length, category, canonical, is_plural = hit
            found[category].add(canonical)
            plural |= is_plural
            start += length
            continue
        if token.isdecimal():
            found["count"].add(int(token))
        elif token in NUMBER_WORDS:
            found["count"].add(NUMBER_WORDS[token])
        plural |= token in QUANTIFIERS
        start += 1
    found["count"] = found["count"] or {"many" if plural else 1}
    return MappingProxyType({category: frozenset(values) for category, values in found.items()})


def readable(prompt: str) -> bool:
    """Whether the guard can judge the prompt: its vocabulary (and the embedder) is English, so letters of another
    script (雨中的红色老爷车) make it unreadable."""
    return all(not char.isalpha() or unicodedata.name(char, "").startswith("LATIN") for char in prompt)


def salient_conflict(a: str, b: str) -> str | None:
    """"script" when either prompt is not `readable`, else the first category in `CATEGORIES` whose canonical
    details differ between the prompts, else None.

    A detail named on one side only conflicts too ("red car" vs "car", "street" vs "street at night"):
    the unspecific prompt's image may show any colour or time, so reusing it is unsafe; actions and objects
    (`IMPLICIT`) conflict only when both sides name one.
    """
    if not (readable(a) and readable(b)):
        return "script"
    left, right = salient_details(a), salient_details(b)
    return next((category for category in CATEGORIES if left[category] != right[category]
                 and (category not in IMPLICIT or (left[category] and right[category]))), None)


def is_duplicate(a: str, b: str, cosine: float, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """Equal normalised text, or cosine >= threshold with no salient conflict."""
    if normalize_prompt(a) == normalize_prompt(b):
        return True
    return bool(cosine >= threshold) and salient_conflict(a, b) is None
