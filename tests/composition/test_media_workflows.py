"""Videos, writing, prompt optimisation and storyboards over HTTP, down to decoded media."""
import json

import pytest
from helpers import decode_png, png, upload, wait_task
from test_images import fetch_png

from models.media import read_mp4

GIF_HEADER = b"GIF89a"


def fetch(client, ref: dict, content_type: str) -> bytes:
    response = client.get(ref["url"])
    assert response.status_code == 200 and response.headers["content-type"].startswith(content_type)
    return response.content


@pytest.mark.parametrize("model,frames", [("svd", 6), ("wan", 9)])
def test_video_from_an_upload_is_an_mp4_and_gif(client, model, frames):
    image = upload(client, png(64, 64, seed=9))
    response = client.post("/v1/videos/generations",
                           json={"image": image, "model": model, "num_frames": frames, "fps": 8, "gif": True})
    assert response.status_code == 202  # videos default to wait_s 0
    task = wait_task(client, response.json()["task_id"])
    assert task["status"] == "succeeded", task
    info = read_mp4(fetch(client, task["result"]["video"], "video/mp4"))
    assert (info.num_frames, info.width, info.height) == (frames, 64, 64)
    assert fetch(client, task["result"]["gif"], "image/gif")[:6] == GIF_HEADER


def test_video_estimate_comes_from_measured_step_times(client):
    image = upload(client, png(64, 64, seed=10))
    client.post("/v1/videos/generations", json={"image": image, "model": "svd", "num_frames": 4, "wait_s": 120})
    estimate = client.get("/v1/videos/estimate", params={"model": "svd", "num_frames": 8}).json()
    assert estimate["measured"] is True and estimate["samples"] >= 1 and estimate["seconds"] > 0
    double = client.get("/v1/videos/estimate", params={"model": "svd", "num_frames": 16}).json()
    assert double["seconds"] == pytest.approx(2 * estimate["seconds"], rel=0.01)


def test_wan_frame_count_is_checked_before_queueing(client):
    image = upload(client, png(64, 64, seed=11))
    response = client.post("/v1/videos/generations", json={"image": image, "model": "wan", "num_frames": 8})
    assert response.status_code == 422 and response.json()["error"]["field"] == "num_frames"


@pytest.mark.parametrize("style", ["comic", "watercolor"])
def test_writing_draws_the_word_with_the_style_controls(client, style):
    response = client.post("/v1/writing", json={"word": "雨", "translation": "rain", "style": style})
    assert response.status_code == 200, response.text
    result = response.json()
    styles = {s["key"]: s for s in client.get("/v1/writing/styles").json()["styles"]}
    assert result["controls"] == styles[style]["controls"]
    assert set(result["conditioning"]) == {"glyph", *styles[style]["controls"]}
    assert "雨" in result["prompt_used"]
    assert fetch_png(client, result["image"]).size == (64, 64)
    glyph = decode_png(client.get(result["conditioning"]["glyph"]).content).convert("L")
    assert min(glyph.getdata()) < 64 < 192 < max(glyph.getdata())  # black strokes on white


def test_writing_rejects_an_unknown_style(client):
    response = client.post("/v1/writing", json={"word": "rain", "style": "baroque"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "style"


def test_prompt_optimize_answers_with_the_contract_fields(client):
    response = client.post("/v1/prompts/optimize", json={"prompt": "a cat on a roof", "mode": "cinematic"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["prompt"] == "a cat on a roof" and result["mode"] == "cinematic" and result["optimized"]


def test_storyboard_makes_scenes_keyframes_clips_one_video_and_exports(client):
    body = {"theme": "a fox learns to fly", "num_scenes": 3, "scene_seconds": 1, "fps": 4, "style": "ink"}
    response = client.post("/v1/storyboards", json=body)
    assert response.status_code == 202
    task = wait_task(client, response.json()["task_id"])
    assert task["status"] == "succeeded", task
    result = task["result"]
    assert len(result["scenes"]) == len(result["keyframes"]) == len(result["clips"]) == 3
    assert all(fetch_png(client, frame).size == (64, 64) for frame in result["keyframes"])
    clips = [read_mp4(fetch(client, clip, "video/mp4")).num_frames for clip in result["clips"]]
    assert clips == [5, 5, 5]  # 1 s at 4 fps, rounded to Wan's 4k + 1
    assert read_mp4(fetch(client, result["video"], "video/mp4")).num_frames == sum(clips)
    assert fetch(client, result["gif"], "image/gif")[:6] == GIF_HEADER
    exported = json.loads(fetch(client, result["export"]["json"], "application/json"))
    assert [s["description"] for s in exported["scenes"]] == [s["description"] for s in result["scenes"]]
    text = fetch(client, result["export"]["text"], "text/plain").decode()
    assert text.count("SCENE ") == 3


def test_storyboard_needs_exactly_one_of_theme_or_script(client):
    response = client.post("/v1/storyboards", json={"theme": "x", "script": "y"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "theme"
