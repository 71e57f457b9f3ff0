"""Styles, souls' variants and selfies over HTTP: per-user unseen delivery, the cap, landmark diversity."""
import concurrent.futures
import time
import uuid

import pytest
from helpers import BASE, png, upload
from test_images import fetch_png

CAP = 3  # composition.variant_cap in the test deployment


@pytest.fixture
def soul(client):
    soul_id = f"soul-{uuid.uuid4().hex[:8]}"
    profile = {"name": "Mira", "prompt": "a red-haired sailor with freckles, ink illustration", "model": "flux"}
    response = client.put(f"/v1/styles/{soul_id}", json=profile)
    assert response.status_code == 200 and response.json()["soul_id"] == soul_id
    return soul_id


def soul_image(client, soul_id: str, user_id: str, cue: str = "on deck"):
    response = client.get(f"/v1/souls/{soul_id}/image", params={"user_id": user_id, "cue": cue})
    assert response.status_code == 200, response.text
    return response.json()


def test_styles_crud(client, soul):
    assert client.get(f"/v1/styles/{soul}").json()["name"] == "Mira"
    assert soul in {s["soul_id"] for s in client.get("/v1/styles").json()["styles"]}
    assert client.delete(f"/v1/styles/{soul}").status_code == 204
    response = client.get(f"/v1/styles/{soul}")
    assert response.status_code == 404 and response.json()["error"]["field"] == "soul_id"


def test_each_user_gets_unseen_variants_until_the_cap(client, soul):
    seen = [soul_image(client, soul, "ana") for _ in range(CAP)]
    assert len({v["variant_id"] for v in seen}) == CAP and not any(v["repeat"] for v in seen)
    assert fetch_png(client, seen[0]["image"]).size == (64, 64)
    capped = soul_image(client, soul, "ana")
    assert capped["repeat"] is True and capped["variant_id"] in {v["variant_id"] for v in seen}

    other = soul_image(client, soul, "ben")  # a new user gets an existing variant, the least delivered
    assert other["cache_hit"] is True and other["variant_id"] in {v["variant_id"] for v in seen}
    assert sorted(client.get("/v1/users/ana/seen").json()["variants"]) == sorted(v["variant_id"] for v in seen)
    pool = client.get(f"/v1/prompts/{seen[0]['prompt_key']}/variants").json()["variants"]
    assert len(pool) == CAP and sum(v["deliveries"] for v in pool) == CAP + 2


def test_concurrent_requests_by_one_user_never_repeat_a_variant(client, soul):
    with concurrent.futures.ThreadPoolExecutor(CAP) as pool:
        results = list(pool.map(lambda _: soul_image(client, soul, "cleo", "at the helm"), range(CAP)))
    assert len({r["variant_id"] for r in results}) == CAP


def test_marking_seen_skips_that_variant(client, soul):
    first = soul_image(client, soul, "dan", "in a storm")
    response = client.post(f"/v1/variants/{first['variant_id']}/seen", json={"user_id": "eve"})
    assert response.status_code == 200 and response.json()["seen"] is True
    assert soul_image(client, soul, "eve", "in a storm")["variant_id"] != first["variant_id"]
    missing = client.post("/v1/variants/nope/seen", json={"user_id": "eve"})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "variant_id"


def test_selfie_landmarks_do_not_repeat_recently(client, soul):
    cities = {c["key"]: c for c in client.get("/v1/selfies/cities").json()["cities"]}
    assert len(cities) >= 20 and all(len(c["landmarks"]) >= 3 for c in cities.values())
    body = {"soul_id": soul, "city_key": "paris", "mood": "happy", "user_id": "fay"}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: client.post("/v1/selfies", json=body), range(3)))
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    landmarks = [r.json()["landmark_key"] for r in results]
    assert len(set(landmarks)) == 3 and set(landmarks) <= {lm["key"] for lm in cities["paris"]["landmarks"]}
    assert fetch_png(client, results[0].json()["image"]).size == (64, 64)


def test_selfie_with_a_clip(client, soul):
    from helpers import wait_task
    from test_media_workflows import GIF_HEADER

    from models.media import read_mp4

    response = client.post("/v1/selfies", json={"soul_id": soul, "city_key": "tokyo", "mood": "calm",
                                                "user_id": "gus", "video": "svd"})
    assert response.status_code == 202
    result = wait_task(client, response.json()["task_id"])["result"]
    assert read_mp4(client.get(result["video"]["url"]).content).num_frames >= 2
    assert client.get(result["gif"]["url"]).content[:6] == GIF_HEADER


def test_a_souls_clip_animates_the_users_unseen_variant_and_a_variant_can_be_animated(client, soul):
    from helpers import wait_task
    from test_media_workflows import GIF_HEADER

    from models.media import read_mp4

    seen = soul_image(client, soul, "ivy", cue="at the market")
    clip = {"model": "svd", "num_frames": 4, "width": 64, "height": 64, "wait_s": 240}
    response = client.post(f"/v1/souls/{soul}/video", json={"user_id": "ivy", "cue": "at the market", **clip})
    assert response.status_code == 200, response.text
    result = response.json()
    # the variant the user had not seen yet, from the same prompt as the soul's image for that cue
    assert result["prompt_key"] == seen["prompt_key"] and result["variant_id"] != seen["variant_id"]
    assert {v["variant_id"] for v in client.get(f"/v1/prompts/{seen['prompt_key']}/variants").json()["variants"]} \
        >= {seen["variant_id"], result["variant_id"]}
    assert result["variant_id"] in client.get("/v1/users/ivy/seen").json()["variants"]
    info = read_mp4(client.get(result["video"]["url"]).content)
    assert (info.num_frames, info.width, info.height) == (4, 64, 64)
    assert result["clip"]["num_frames"] == 4 and result["clip"]["metadata"]["model"] == "svd"
    assert client.get(result["gif"]["url"]).content[:6] == GIF_HEADER

    response = client.post(f"/v1/variants/{seen['variant_id']}/video", json={**clip, "wait_s": 0, "fps": 5})
    assert response.status_code == 202
    task = wait_task(client, response.json()["task_id"])
    assert task["kind"] == "video" and task["result"]["fps"] == 5
    assert read_mp4(client.get(task["result"]["video"]["url"]).content).num_frames == 4

    # DESIGN.md's GET form: the same request as query parameters, the user's next unseen variant
    response = client.get(f"/v1/souls/{soul}/video", params={"user_id": "ivy", "cue": "at the market", **clip})
    assert response.status_code == 200, response.text
    assert response.json()["prompt_key"] == seen["prompt_key"]
    assert response.json()["variant_id"] not in (seen["variant_id"], result["variant_id"])
    assert read_mp4(client.get(response.json()["video"]["url"]).content).num_frames == 4

    missing = client.post("/v1/variants/0123456789abcdef/video", json={})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "variant_id"
    for path, body, status, field in ((f"/v1/souls/{soul}/video", {"cue": "x"}, 422, "user_id"),
                                      ("/v1/souls/nobody/video", {"user_id": "ivy"}, 404, "soul_id"),
                                      (f"/v1/souls/{soul}/video", {"user_id": "ivy", "model": "wan", "num_frames": 8},
                                       422, "num_frames"),
                                      (f"/v1/souls/{soul}/video", {"user_id": "ivy", "frames": 8}, 422, "frames")):
        for response in (client.post(path, json=body), client.get(path, params=body)):
            assert response.status_code == status and response.json()["error"]["field"] == field, response.text


def test_a_souls_clip_without_a_size_is_its_images_size(client):
    """A soul drawn at 128×64 is animated at 128×64, not at the video family's default 64²."""
    from models.media import read_mp4

    soul_id = f"soul-{uuid.uuid4().hex[:8]}"
    profile = {"prompt": "a lighthouse keeper, woodcut", "model": "flux", "width": 128, "height": 64}
    assert client.put(f"/v1/styles/{soul_id}", json=profile).status_code == 200
    response = client.post(f"/v1/souls/{soul_id}/video", json={"user_id": "wes", "cue": "at dusk", "model": "svd",
                                                               "num_frames": 4, "gif": False, "wait_s": 240})
    assert response.status_code == 200, response.text
    result = response.json()
    assert fetch_png(client, result["image"]).size == (128, 64)
    assert (result["clip"]["width"], result["clip"]["height"]) == (128, 64)
    assert read_mp4(client.get(result["video"]["url"]).content).width == 128


def test_selfie_rejects_unknown_city_and_soul(client, soul):
    response = client.post("/v1/selfies", json={"soul_id": soul, "city_key": "atlantis", "user_id": "h"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "city_key"
    response = client.post("/v1/selfies", json={"soul_id": "nobody", "city_key": "paris", "user_id": "h"})
    assert response.status_code == 404 and response.json()["error"]["field"] == "soul_id"


def test_a_souls_cues_are_matched_on_the_cue_within_its_style(client):
    """A long shared style must not merge different cues: each cue is its own prompt, its paraphrases are not."""
    soul_id = f"soul-{uuid.uuid4().hex[:8]}"
    style = {"name": "Mira", "model": "flux",
             "prompt": "a red-haired sailor, ink illustration, dramatic lighting, detailed linework"}
    assert client.put(f"/v1/styles/{soul_id}", json=style).status_code == 200
    cues = ("on deck", "at the market", "in a library", "climbing the mast")
    first = {cue: soul_image(client, soul_id, "ivy", cue) for cue in cues}
    assert len({r["prompt_key"] for r in first.values()}) == len(cues)
    assert all(r["match"] == "new" and r["metadata"]["model"] == "flux" for r in first.values())
    recased = soul_image(client, soul_id, "ivy", "On Deck!")
    assert recased["prompt_key"] == first["on deck"]["prompt_key"] and recased["match"] == "exact"
    paraphrase = soul_image(client, soul_id, "ivy", "on the deck")
    assert paraphrase["prompt_key"] == first["on deck"]["prompt_key"] and paraphrase["match"] == "semantic"
    synonym = soul_image(client, soul_id, "ivy", "at the marketplace")
    assert synonym["prompt_key"] == first["at the market"]["prompt_key"]


def test_selfies_at_different_landmarks_never_share_a_prompt(client, soul):
    """Rome's landmark prompts share most of their words; each landmark is in the dedup scope, so no selfie shows
    another landmark than the one it names."""
    by_landmark: dict[str, set[str]] = {}
    for _ in range(8):
        response = client.post("/v1/selfies", json={"soul_id": soul, "city_key": "rome", "mood": "happy",
                                                     "user_id": "kim"})
        assert response.status_code == 200, response.text
        assert response.json()["metadata"]["model"] == "flux" and response.json()["match"] in ("new", "exact")
        by_landmark.setdefault(response.json()["landmark_key"], set()).add(response.json()["prompt_key"])
    assert len(by_landmark) >= 4 and all(len(keys) == 1 for keys in by_landmark.values())
    assert len(set().union(*by_landmark.values())) == len(by_landmark)


def test_every_generation_route_takes_priority(client, soul):
    """The lane a request asks for is its task's: native bodies, the soul image's query, OpenAI's `extra_body`."""
    from openai import OpenAI

    run = time.time_ns()
    source = upload(client, png(64, 64, seed=77))
    posts = {"/v1/videos/generations": {"image": source, "model": "svd", "num_frames": 8, "steps": 40},
             "/v1/storyboards": {"theme": f"a snail crosses a bridge, run {run}", "num_scenes": 1},
             "/v1/prompts/optimize": {"prompt": f"a clockmaker's shop, run {run}"},
             "/v1/images/edits": {"image": source, "prompt": f"add a hat, run {run}"}}
    lanes = {}
    for (route, body), priority in zip(posts.items(), ("high", "low", "high", "low")):
        response = client.post(route, json=body | {"priority": priority, "wait_s": 0})
        assert response.status_code == 202, (route, response.text)
        lanes[route] = (priority, client.get(f"/v1/tasks/{response.json()['task_id']}").json()["lane"])
        client.delete(f"/v1/tasks/{response.json()['task_id']}")
    image = client.get(f"/v1/souls/{soul}/image", params={"user_id": f"pri-{run}", "cue": "by the sea",
                                                            "priority": "low", "wait_s": 0})
    assert image.status_code == 202, image.text
    lanes["soul image"] = ("low", client.get(f"/v1/tasks/{image.json()['task_id']}").json()["lane"])
    raw = OpenAI(base_url=f"{BASE}/openai/v1", api_key="local", max_retries=0, timeout=300).images.with_raw_response \
        .generate(prompt=f"a tin lantern, run {run}", size="64x64", extra_body={"priority": "high"})
    lanes["openai"] = ("high", client.get(f"/v1/tasks/{raw.headers['x-task-id']}").json()["lane"])
    assert all(asked == got for asked, got in lanes.values()), lanes
