"""Prompt-dedup matching on the labelled pairs with the bundled MiniLM: no Redis, no Ray."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from composition.dedup.matching import (DEFAULT_THRESHOLD, is_duplicate, lsh_signatures, normalize_prompt,
                                        salient_conflict)

PAIRS = [json.loads(line) for line in Path("tests/data/prompt_pairs.jsonl").read_text().splitlines() if line]


@pytest.fixture(scope="module")
def embedded():
    """(pair, cosine, vector a, vector b) for every labelled pair, embedded once."""
    from config.families import EmbedderArgs
    from models.embedder import Embedder

    embedder = Embedder(EmbedderArgs())
    left, right = embedder.embed([p["a"] for p in PAIRS]), embedder.embed([p["b"] for p in PAIRS])
    return [(p, float(a @ b), a, b) for p, a, b in zip(PAIRS, left, right)]


def test_file_has_enough_pairs_of_both_labels():
    labels = Counter(p["label"] for p in PAIRS)
    assert len(PAIRS) >= 100 and set(labels) == {"paraphrase", "negative"}
    assert min(labels.values()) >= 50
    assert {p["category"] for p in PAIRS if p["label"] == "negative"} >= {
        "colour", "count", "subject", "material", "time_of_day", "negation", "medium", "weather", "season",
        "composed-place", "composed-action", "composed-object", "composed-landmark"}
    composed = [p for p in PAIRS if "style" in p]
    assert len(composed) >= 40 and all(p["a"] == f"{p['style']}, {p['cue_a']}" for p in composed)


@pytest.mark.parametrize("a, b", [("A red car.", "a  red car"), ("“Sunset”, over the SEA!", "sunset over the sea"),
                                  ("Ａ　cat\tin\nspace", "a cat in space"), ("don’t stop", "dont stop"),
                                  ("東京の夜、ネオン。", "東京の夜 ネオン")])
def test_normalisation_makes_trivial_variants_equal(a, b):
    assert normalize_prompt(a) == normalize_prompt(b)


def test_normalisation_keeps_digits_and_letters():
    assert normalize_prompt("  Two 3D cats -- café, 猫! ") == "two 3d cats café 猫"


@pytest.mark.parametrize("a, b, category", [
    ("a red car on a bridge", "a blue car on a bridge", "colour"),
    ("a car in the desert", "a crimson car in the desert", "colour"),
    ("three apples on a plate", "four apples on a plate", "count"),
    ("a horse in a field", "horses in a field", "count"),
    ("a cat on a sofa", "a dog on a sofa", "subject"),
    ("a man reading a newspaper", "a woman reading a newspaper", "subject"),
    ("a wooden spoon", "a metal spoon", "material"),
    ("a harbour at night", "a harbour at noon", "time_of_day"),
    ("a beach at sunset", "a beach at sunrise", "time_of_day"),
    ("a pizza with olives", "a pizza without olives", "negation"),
    ("a photo of a fox", "an oil painting of a fox", "medium"),
    ("a watercolor of a barn", "pixel art of a barn", "medium"),
    ("a bridge in the rain", "a bridge in the fog", "weather"),
    ("a lake in winter", "a lake in summer", "season"),
])
def test_salient_conflict_names_the_category(a, b, category):
    assert salient_conflict(a, b) == category
    assert salient_conflict(b, a) == category


@pytest.mark.parametrize("a, b", [
    ("a photograph of a kitty", "photo of a cat"),
    ("an automobile at dusk", "a car at twilight"),
    ("two dogs in the snow", "a pair of dogs in snowy weather"),
    ("a grey watercolour of a lighthouse", "a gray watercolor painting of a lighthouse"),
    ("a street with no cars", "a street without any cars"),
    ("a lady in a wooden boat, autumn", "a woman in a boat made of wood in the fall"),
])
def test_salient_conflict_is_none_on_paraphrases(a, b):
    assert salient_conflict(a, b) is None


def test_exact_normalised_match_is_a_duplicate_at_any_cosine():
    assert is_duplicate("A red car.", "a red car", cosine=0.0)
    assert not is_duplicate("a red car", "a blue car", cosine=0.99)


def test_labelled_pairs_at_the_default_threshold(embedded):
    paraphrases = [is_duplicate(p["a"], p["b"], c) for p, c, _, _ in embedded if p["label"] == "paraphrase"]
    false_merges = [(p["a"], p["b"]) for p, c, _, _ in embedded
                    if p["label"] == "negative" and is_duplicate(p["a"], p["b"], c, DEFAULT_THRESHOLD)]
    assert sum(paraphrases) / len(paraphrases) >= 0.90
    assert false_merges == []


def test_composed_pairs_matched_on_their_cues_within_the_style_scope():
    """What a soul's dedup compares: the cues alone (the style is in the scope)."""
    from config.families import EmbedderArgs
    from models.embedder import Embedder

    composed = [p for p in PAIRS if "style" in p]
    embedder = Embedder(EmbedderArgs())
    left, right = (embedder.embed([normalize_prompt(p[side]) for p in composed]) for side in ("cue_a", "cue_b"))
    merged = [is_duplicate(p["cue_a"], p["cue_b"], float(a @ b)) for p, a, b in zip(composed, left, right)]
    paraphrases = [m for m, p in zip(merged, composed) if p["label"] == "paraphrase"]
    assert sum(paraphrases) / len(paraphrases) >= 0.90
    assert [p["cue_b"] for m, p in zip(merged, composed) if m and p["label"] == "negative"] == []


@pytest.mark.parametrize("a, b, category", [
    ("a sailor, ink, on deck", "a sailor, ink, at the market", "place"),
    ("a selfie in front of the Colosseum", "a selfie in front of the Spanish Steps", "landmark"),
    ("a knight reading a book", "a knight writing a book", "action"),
    ("a knight holding a lantern", "a knight holding a sword", "object"),
])
def test_places_landmarks_actions_and_objects_conflict(a, b, category):
    assert salient_conflict(a, b) == category


def test_actions_and_objects_named_on_one_side_only_do_not_conflict():
    assert salient_conflict("an owl on a branch", "an owl sitting on a branch") is None
    assert salient_conflict("a samurai with a sword", "a samurai with a sword, holding it") is None


def test_identical_vectors_share_every_bucket():
    vector = np.random.default_rng(1).standard_normal(384).astype(np.float32)
    signatures = lsh_signatures(vector, tables=8, bits=8)
    assert signatures == lsh_signatures(vector.copy(), tables=8, bits=8) and len(set(signatures)) == 8
    assert signatures[0].startswith("t0:") and signatures != lsh_signatures(vector, tables=8, bits=8, seed=1)


def test_paraphrases_share_a_bucket(embedded):
    shared = [bool(set(lsh_signatures(a)) & set(lsh_signatures(b)))
              for p, _, a, b in embedded if p["label"] == "paraphrase"]
    assert sum(shared) / len(shared) >= 0.95
