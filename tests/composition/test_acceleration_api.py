"""`acceleration` over HTTP: a cached image is another prompt key (other pixels) and says the steps it skipped on
its task; a style carries it to its souls' images; a video takes it on wan; an unknown value, or a family without a
step cache, is a 422 naming the field."""
import pytest
from helpers import png, upload, wait_task

from config.specs import no_step_cache

BODY = {"prompt": "a tin robot watering tulips", "model": "flux", "steps": 3, "seed": 4, "wait_s": 120}


def test_a_cached_image_is_another_prompt_key_and_its_task_says_the_steps_skipped(client):
    plain = client.post("/v1/images/generations", json=BODY)
    cached = client.post("/v1/images/generations", json=BODY | {"acceleration": "step_cache"})
    assert plain.status_code == cached.status_code == 200, cached.text
    assert plain.json()["prompt_key"] != cached.json()["prompt_key"]
    assert plain.json()["images"][0]["metadata"]["steps_skipped"] == 0
    task = client.get(f"/v1/tasks/{cached.headers['X-Task-Id']}").json()
    skipped = task["result"]["images"][0]["metadata"]["steps_skipped"]
    assert isinstance(skipped, int) and 0 <= skipped < BODY["steps"]  # the first step is never skipped
    again = client.post("/v1/images/generations", json=BODY | {"acceleration": "step_cache"}).json()
    assert again["cache_hit"] is True and again["prompt_key"] == cached.json()["prompt_key"]


def test_a_null_acceleration_is_none(client):
    plain = client.post("/v1/images/generations", json=BODY).json()
    nulled = client.post("/v1/images/generations", json=BODY | {"acceleration": None})
    assert nulled.status_code == 200, nulled.text
    assert nulled.json()["prompt_key"] == plain["prompt_key"] and nulled.json()["cache_hit"] is True


def test_an_edit_and_a_wan_video_take_the_step_cache(client):
    image = upload(client, png(64, 64, 21))
    edit = client.post("/v1/images/edits", json={"image": image, "prompt": "add snow", "steps": 2, "wait_s": 120,
                                                 "acceleration": "step_cache"})
    assert edit.status_code == 200, edit.text
    body = {"image": image, "model": "wan", "num_frames": 5, "steps": 3, "gif": False, "wait_s": 240,
            "acceleration": "step_cache"}
    video = client.post("/v1/videos/generations", json=body)
    assert video.status_code in (200, 202), video.text
    task = wait_task(client, video.headers["X-Task-Id"]) if video.status_code == 202 else {"result": video.json()}
    assert task["result"]["num_frames"] == 5 and "steps_skipped" in task["result"]["metadata"]


def test_a_styles_acceleration_reaches_its_souls_images(client):
    profile = {"prompt": "a brass automaton, ink", "model": "flux", "steps": 2}
    assert client.put("/v1/styles/gear", json=profile).status_code == 200
    plain = client.get("/v1/souls/gear/image", params={"user_id": "ada", "cue": "at the forge"}).json()
    assert client.put("/v1/styles/gear", json=profile | {"acceleration": "step_cache"}).status_code == 200
    assert client.get("/v1/styles/gear").json()["acceleration"] == "step_cache"
    cached = client.get("/v1/souls/gear/image", params={"user_id": "ada", "cue": "at the forge"}).json()
    assert cached["prompt_key"] != plain["prompt_key"]


@pytest.mark.parametrize("path, body", [
    ("/v1/images/generations", BODY | {"acceleration": "turbo"}),
    ("/v1/images/generations", BODY | {"model": "sdxl", "acceleration": "step_cache"}),
    ("/v1/videos/generations", {"model": "svd", "acceleration": "step_cache", "prompt": "a kite"}),
    ("/v1/videos/generations", {"model": "wan", "acceleration": "fast", "prompt": "a kite"}),
])
def test_an_unknown_acceleration_or_a_family_without_a_step_cache_is_a_422_naming_it(client, path, body):
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "acceleration"


def test_a_style_with_acceleration_on_sdxl_is_a_422_naming_it(client):
    response = client.put("/v1/styles/cog", json={"prompt": "a cog", "model": "sdxl", "acceleration": "step_cache"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "acceleration"
    assert no_step_cache("sdxl") in response.json()["error"]["message"]  # the replica's own refusal, word for word
