"""Prompt-dedup matching on the labelled pairs with the bundled MiniLM, and the prompt index (a vector set in the
session's real Redis); no Ray."""
import json
from collections import Counter
from pathlib import Path

import pytest
from helpers import on_redis

from composition.dedup.matching import DEFAULT_THRESHOLD, is_duplicate, normalize_prompt, salient_conflict

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
    ("a red car on a rainy street in Paris", "a red car on a rainy street in Tokyo", "place"),
    ("a rainy Venice street with a red car", "a red car on a rainy street", "place"),
    ("雨中的红色老爷车", "一辆蓝色的老爷车在雨中", "script"),  # the guard reads English: other scripts merge exactly only
    ("a cat on a roof", "一只猫在屋顶上", "script"),
])
def test_places_landmarks_actions_and_objects_conflict(a, b, category):
    assert salient_conflict(a, b) == category


def test_actions_and_objects_named_on_one_side_only_do_not_conflict():
    assert salient_conflict("an owl on a branch", "an owl sitting on a branch") is None
    assert salient_conflict("a samurai with a sword", "a samurai with a sword, holding it") is None


def index_scenario(redis_url, steps, **options):
    """Runs `steps(store, scope)` with a PromptIndex on the real Redis, in a fresh scope."""
    import uuid

    from composition.store.prompt_index import PromptIndex

    return on_redis(redis_url, lambda client: steps(PromptIndex(client, **options), f"test-{uuid.uuid4().hex[:12]}"))


def test_the_index_returns_each_paraphrases_partner_among_its_nearest(embedded, redis_url):
    """Every paraphrase's partner is among the 8 nearest of 438 indexed prompts (both sides of every pair)."""
    async def steps(store, scope):
        keys = {}
        for index, (p, _, a, b) in enumerate(embedded):
            for side, text, vector in (("a", p["a"], a), ("b", p["b"], b)):
                keys[index, side], _ = await store.register(scope, text, f"{index}{side} {normalize_prompt(text)}",
                                                            vector)
        found = [[key for key, _, _ in await store.candidates(scope, a, 8)] for _, _, a, _ in embedded]
        return keys, found

    keys, found = index_scenario(redis_url, steps)
    paraphrases = [i for i, (p, *_) in enumerate(embedded) if p["label"] == "paraphrase"]
    assert all(keys[i, "b"] in found[i] for i in paraphrases)
    assert all(keys[i, "a"] in found[i] for i in range(len(embedded)))  # a prompt finds itself


def test_prompts_unused_for_the_index_ttl_leave_the_index_but_keep_their_variants(embedded, redis_url):
    import time

    import redis as sync_redis

    from composition.store.variants import Variants
    from config import keys as redis_keys

    (_, _, used, _), (_, _, unused, _) = embedded[0], embedded[1]

    async def steps(store, scope):
        (kept, created), (again, repeated) = [await store.register(scope, "a used prompt", "a used prompt", used)
                                              for _ in range(2)]
        assert created and (again, repeated) == (kept, False)  # the second registration found the first
        gone, _ = await store.register(scope, "an unused prompt", "an unused prompt", unused)
        await Variants(store.client).add_variant(gone, 7, "0" * 32, {})
        await store.client.zadd(redis_keys.prompt_recent(), {kept: time.time() - 50, gone: time.time() - 100})
        assert await store.exact(scope, "a used prompt") == kept
        await store.touch(scope, "a used prompt")  # a use: its recency is now
        evicted = await store.evict(time.time() - 10)
        nearest = [key for key, _, _ in await store.candidates(scope, unused, 8)]
        return kept, gone, evicted, nearest, await store.exact(scope, "an unused prompt"), scope

    own_db = redis_url.rsplit("/", 1)[0] + "/9"  # the recency index is global: no other test's prompts in it
    client = sync_redis.Redis.from_url(own_db)
    client.flushdb()
    kept, gone, evicted, nearest, exact, scope = index_scenario(own_db, steps)
    assert evicted == 1 and nearest == [kept] and exact is None
    assert client.execute_command("VCARD", redis_keys.prompt_vectors(scope)) == 1
    assert client.hget(redis_keys.prompt(gone), "embedding") is None
    assert client.hget(redis_keys.prompt(gone), "prompt") == b"an unused prompt"
    assert client.hlen(redis_keys.prompt_seeds(gone)) == 1 and client.ttl(redis_keys.prompt_exact(scope, "x")) == -2
