"""Images over HTTP: generation (SDXL, FLUX), dedup (exact, paraphrase, salient negatives), single-flight,
control-guided and edits, each down to the decoded PNG."""
import concurrent.futures
import json
import time

import pytest
import redis
from helpers import decode_png, on_redis, png, upload, wait_running, wait_task

from config import keys


def fetch_png(client, ref: dict):
    response = client.get(ref["url"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return decode_png(response.content)


@pytest.mark.parametrize("model", ["sdxl", "flux"])
def test_generation_returns_pngs_with_metadata(client, model):
    body = {"prompt": f"a lighthouse on a cliff painted for {model}", "model": model, "width": 64, "height": 64,
            "n": 2}
    response = client.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["cache_hit"] is False and result["match"] == "new" and len(result["images"]) == 2
    assert len({image["seed"] for image in result["images"]}) == 2
    for image in result["images"]:
        assert fetch_png(client, image).size == (64, 64)
        assert image["metadata"]["model"] == model and image["metadata"]["batch_size"] >= 1
    assert response.headers["X-Task-Id"]


def test_exact_and_paraphrase_hits_reuse_the_result_without_a_model_call(client, redis_url):
    first = client.post("/v1/images/generations", json={"prompt": "A red vintage car parked on a rainy street"})
    assert first.status_code == 200 and first.json()["cache_hit"] is False
    tasks_before = redis.Redis.from_url(redis_url).zcard(keys.task_index())

    exact = client.post("/v1/images/generations", json={"prompt": "a red vintage car parked on a rainy street."})
    paraphrase = client.post("/v1/images/generations",
                             json={"prompt": "a vintage red car parked on a street in the rain"})
    for response, match in ((exact, "exact"), (paraphrase, "semantic")):
        assert response.status_code == 200
        body = response.json()
        assert body["cache_hit"] is True and body["match"] == match
        assert body["prompt_key"] == first.json()["prompt_key"]
        assert body["images"] == first.json()["images"]
    assert redis.Redis.from_url(redis_url).zcard(keys.task_index()) == tasks_before  # no task, no model call


def test_a_paraphrase_that_joins_the_running_task_of_the_prompt_it_matched_answers_semantic(client):
    """The task renders the first prompt ("new"); a paraphrase sent while it runs joins it (single-flight) and
    answers how it matched, with the images the task made; sent again, it is found by its remembered wording and
    still answers "semantic" (its key is the other prompt's)."""
    body = {"model": "sdxl", "width": 256, "height": 256, "steps": 40, "seed": 11}
    first = client.post("/v1/images/generations", json=body | {"prompt": "a green frog sitting on a lily pad",
                                                                "wait_s": 0})
    assert first.status_code == 202
    joined = client.post("/v1/images/generations", json=body | {"prompt": "a green frog perched on a lily pad"})
    assert joined.status_code == 200 and joined.headers["X-Task-Id"] == first.json()["task_id"]  # joined, not cached
    task = wait_task(client, first.json()["task_id"])
    assert (task["result"]["match"], joined.json()["match"]) == ("new", "semantic")
    assert joined.json()["images"] == task["result"]["images"]
    again = client.post("/v1/images/generations", json=body | {"prompt": "a green frog perched on a lily pad"}).json()
    assert (again["match"], again["cache_hit"], again["images"]) == ("semantic", True, task["result"]["images"])


@pytest.mark.parametrize("other", ["a blue vintage car parked on a rainy street",
                                   "two red vintage cars parked on a rainy street",
                                   "a red vintage car parked on a rainy street at night"])
def test_salient_differences_are_not_merged(client, other):
    base = client.post("/v1/images/generations", json={"prompt": "a red vintage car parked on a rainy street"})
    response = client.post("/v1/images/generations", json={"prompt": other})
    assert response.status_code == 200
    assert response.json()["prompt_key"] != base.json()["prompt_key"]
    assert response.json()["match"] == "new"


def test_concurrent_identical_requests_make_one_generation(client, redis_url):
    body = {"prompt": "a paper boat sailing across a puddle, single flight", "model": "flux"}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: client.post("/v1/images/generations", json=body), range(8)))
    assert all(r.status_code == 200 for r in responses)
    task_ids = {r.headers.get("X-Task-Id") for r in responses} - {None}
    assert len({r.json()["images"][0]["asset_id"] for r in responses}) == 1
    # Every miss joined the one rendering task (hits carry none); a request whose cache check came just before that
    # task stored its image, and whose task was created just after it ended, has a task of its own that finds the
    # image and renders nothing: one task spent device time, once.
    store = redis.Redis.from_url(redis_url)
    records = [store.hgetall(keys.task(task_id)) for task_id in task_ids]
    assert all(record[b"status"] == b"succeeded" and record[b"attempts"] == b"1" for record in records)
    assert sorted(b"gpu_seconds" in record for record in records) == [False] * (len(records) - 1) + [True]


def rendered_for(store: redis.Redis, prompt_key: str) -> set[str]:
    """The PNG assets rendered for `prompt_key` (renditions name a parent), from their recipes."""
    found = set()
    for key in store.scan_iter(keys.asset_recipe("*")):
        recipe = json.loads(store.get(key))
        if recipe.get("prompt_key") == prompt_key and recipe.get("parent") is None:
            found.add(key.decode().split(":")[-2])
    return found


def test_concurrent_requests_of_one_new_prompt_in_other_counts_and_formats_get_its_one_first_variant(client,
                                                                                                    redis_url):
    """Other counts and encodings are other tasks; each variant they miss is rendered once (by the task that claimed
    it, the others wait for it) and every caller gets it: 3 renders for 4 tasks wanting 1 + 3 + 2 + 1 variants."""
    body = {"prompt": "a copper teapot on a stove, one variant", "model": "sdxl", "width": 64, "height": 64,
            "steps": 8}
    extras = [{"n": 1}, {"n": 3}, {"n": 2, "output_format": "jpeg"}, {"output_format": "webp"}]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda extra: client.post("/v1/images/generations", json=body | extra), extras))
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    firsts = [r.json()["images"][0] for r in responses]
    assert len({image["variant_id"] for image in firsts}) == 1
    assert firsts[0]["asset_id"] == firsts[1]["asset_id"]
    variants = responses[1].json()["images"]  # n=3: every slot the tasks wanted
    assert rendered_for(redis.Redis.from_url(redis_url), responses[0].json()["prompt_key"]) == {
        image["asset_id"] for image in variants}
    repeat = client.post("/v1/images/generations", json=body | {"n": 1}).json()
    assert repeat["cache_hit"] and repeat["images"][0]["asset_id"] == firsts[0]["asset_id"]
    for rendition in firsts[2:]:  # the stored PNG re-encoded, found again by a repeat
        again = client.post("/v1/images/generations", json=body | {"output_format": rendition["format"]}).json()
        assert again["images"][0]["asset_id"] == rendition["asset_id"]


def test_a_variant_whose_rendering_task_is_cancelled_is_rendered_by_the_task_waiting_for_it(client, redis_url):
    """A second encoding of a new prompt waits for the first task's render of their one variant; when that task is
    cancelled mid-render, the waiting task renders the variant itself, going on from the last step the first task
    kept, and succeeds."""
    body = {"prompt": "a brass lantern on a windowsill, handed over", "model": "sdxl", "width": 256, "height": 256,
            "steps": 40, "seed": 5, "wait_s": 0}
    first = client.post("/v1/images/generations", json=body).json()["task_id"]
    wait_running(client, first)
    second = client.post("/v1/images/generations", json=body | {"output_format": "webp"}).json()["task_id"]
    time.sleep(0.5)
    waiting = client.get(f"/v1/tasks/{second}").json()  # waiting for the first task's render: its steps shown
    assert (waiting["stage"], waiting["rendered_by"], waiting["steps"]) == ("waiting", first, 40), waiting
    assert waiting["step"] >= 1 and waiting["progress"] > 0, waiting
    wait_running(client, first, progress=0.45)  # past its kept step 16 (40 % of 40)
    assert client.delete(f"/v1/tasks/{first}").status_code == 200
    task = wait_task(client, second)
    assert (client.get(f"/v1/tasks/{first}").json()["status"], task["status"]) == ("cancelled", "succeeded")
    assert task["rendered_by"] is None
    image = task["result"]["images"][0]
    response = client.get(image["url"])
    assert image["format"] == "webp" and response.headers["content-type"] == "image/webp"
    assert decode_png(response.content).size == (256, 256)
    store = redis.Redis.from_url(redis_url)
    kept = [int(field.split(b":")[-1]) for field in store.hkeys(keys.task_kept(first))]
    assert image["metadata"]["resumed_from_step"] == max(kept) >= 16
    assert len(rendered_for(store, task["result"]["prompt_key"])) == 1
    assert store.get(keys.variant_render(task["result"]["prompt_key"], body["seed"])) is None  # released


def test_concurrent_identical_prompts_resolve_to_one_new_key_and_exact_matches(montage, redis_url):
    """Eight requests of one new prompt at once, each resolved then committed: one indexes it ("new"), the rest
    find it ("exact")."""
    import asyncio
    import uuid

    from ray import serve

    from composition.dedup.resolve import Dedup
    from composition.store.prompt_index import PromptIndex
    from config.composition import DedupArgs

    async def run(client):
        dedup = Dedup(PromptIndex(client), serve.get_deployment_handle("Embedder", "montage"), DedupArgs())
        scope = f"race-{uuid.uuid4().hex[:8]}"
        prompt = "an origami crane on a chessboard"
        planned = await asyncio.gather(*(dedup.resolve(scope, prompt) for _ in range(8)))
        return await asyncio.gather(*(dedup.commit(resolution) for resolution in planned))

    resolutions = on_redis(redis_url, run)
    assert len({r.prompt_key for r in resolutions}) == 1
    assert sorted(r.match for r in resolutions) == ["exact"] * 7 + ["new"]


def test_a_request_refused_for_an_unknown_project_leaves_the_prompt_index_unchanged(client, redis_url):
    from composition.dedup.matching import normalize_prompt
    from composition.store.prompt_index import digest

    prompt = f"a paper boat on a puddle, {time.time_ns()}"
    response = client.post("/v1/images/generations", json={"prompt": prompt, "project_id": "no-such-project"})
    assert response.status_code == 404 and response.json()["error"]["field"] == "project_id"
    pattern = keys.prompt_exact("*", digest(normalize_prompt(prompt)))
    assert list(redis.Redis.from_url(redis_url).scan_iter(pattern)) == []
    assert client.post("/v1/images/generations", json={"prompt": prompt, "wait_s": 0}).status_code == 202
    assert len(list(redis.Redis.from_url(redis_url).scan_iter(pattern))) == 1  # an accepted one is indexed


def test_explicit_seed_is_honoured_and_cached(client):
    body = {"prompt": "a glass teapot on a wooden table", "seed": 1234, "n": 2}
    first = client.post("/v1/images/generations", json=body).json()
    assert [image["seed"] for image in first["images"]] == [1234, 1235]
    again = client.post("/v1/images/generations", json=body).json()
    assert again["cache_hit"] is True and again["images"] == first["images"]


def test_controlled_generation_returns_images_and_control_maps(client):
    source = upload(client, png(64, 64, seed=3))
    body = {"prompt": "a castle drawn from the outline", "controls": [{"type": "canny", "image": source},
                                                                      {"type": "depth", "image": source,
                                                                       "scale": 0.5}],
            "width": 64, "height": 64, "seed": 5}
    response = client.post("/v1/images/controlled", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert fetch_png(client, result["images"][0]).size == (64, 64)
    assert [m["type"] for m in result["control_maps"]] == ["canny", "depth"]
    assert all(fetch_png(client, m).size == (64, 64) for m in result["control_maps"])


@pytest.mark.parametrize(("size", "expected"), [((128, 128), (128, 128)), ((64, 48), (64, 48)), ((90, 62), (96, 64))])
def test_an_edit_keeps_the_sources_size_as_far_as_the_family_serves_it(client, size, expected):
    """Without width and height an edit is the source's size, rounded to the tiny FLUX's grid (16). (A source over the
    family's pixel limit, the largest size of its aspect within it: tests/models/test_types.py, since a 512² frame
    holds a tiny CPU replica for minutes.)"""
    source = upload(client, png(*size, seed=4))
    response = client.post("/v1/images/edits", json={"image": source, "prompt": "make it snow", "seed": 2})
    assert response.status_code == 200, response.text
    assert fetch_png(client, response.json()["images"][0]).size == expected


def test_a_control_guided_image_takes_its_first_control_images_size(client):
    wide, square = upload(client, png(128, 96, seed=6)), upload(client, png(64, 64, seed=6))
    body = {"prompt": "a bridge drawn from the outline", "seed": 3,
            "controls": [{"type": "canny", "image": wide}, {"type": "depth", "image": square}]}
    result = client.post("/v1/images/controlled", json=body).json()
    assert fetch_png(client, result["images"][0]).size == (128, 96)
    assert [fetch_png(client, m).size for m in result["control_maps"]] == [(128, 96)] * 2
    sized = client.post("/v1/images/controlled", json=body | {"width": 64, "height": 64}).json()
    assert fetch_png(client, sized["images"][0]).size == (64, 64)  # a size given wins


def test_wait_zero_answers_202_and_the_task_finishes_with_the_same_shape(client):
    response = client.post("/v1/images/generations", json={"prompt": "a snail racing a tortoise", "wait_s": 0})
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status_url"] == f"/v1/tasks/{accepted['task_id']}"
    deadline = time.monotonic() + 60
    while (task := client.get(accepted["status_url"]).json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert task["status"] == "succeeded" and task["progress"] == 1.0 and task["kind"] == "image"
    assert set(task["result"]) >= {"images", "prompt_key", "cache_hit"}
    assert fetch_png(client, task["result"]["images"][0]).size == (64, 64)


def test_idempotency_key_returns_the_same_task(client):
    body = {"prompt": "an origami crane on a desk", "wait_s": 0, "seed": 77, "steps": 60}
    headers = {"Idempotency-Key": "crane-1"}
    first = client.post("/v1/images/generations", json=body, headers=headers)
    retry = client.post("/v1/images/generations", json=body, headers=headers)
    assert first.status_code == 202
    if retry.status_code == 202:  # still rendering: the same task
        assert retry.headers["X-Task-Id"] == first.headers["X-Task-Id"] == first.json()["task_id"]
    else:  # already rendered: the cache answers with its images
        assert retry.status_code == 200 and retry.json()["cache_hit"] is True
    changed = client.post("/v1/images/generations", json=body | {"seed": 78}, headers=headers)
    assert changed.status_code == 422 and changed.json()["error"]["field"] == "Idempotency-Key"
    other_kind = client.post("/v1/prompts/optimize", json={"prompt": "a crane", "wait_s": 60}, headers=headers)
    assert other_kind.headers["X-Task-Id"] != first.headers["X-Task-Id"]  # a key is scoped to its kind of task
    assert other_kind.status_code == 200 and "optimized" in other_kind.json()
