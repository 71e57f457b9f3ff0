"""Videos, writing, prompt optimisation and storyboards over HTTP, down to decoded media."""
import json

import pytest
from helpers import decode_png, on_redis, png, upload, wait_task
from test_images import fetch_png

from composition.workflows.storyboards import clip_frames
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


@pytest.mark.parametrize("model", ["svd", "wan"])
def test_a_video_takes_its_images_size_rounded_to_the_familys_grid(client, model):
    """Without width and height a clip is its image's size (100×60 → 96×64 on the tiny families' grid of 16)."""
    image = upload(client, png(100, 60, seed=12))
    body = {"image": image, "model": model, "num_frames": 5, "gif": False, "wait_s": 120}
    result = client.post("/v1/videos/generations", json=body).json()
    assert (result["width"], result["height"]) == (96, 64)
    info = read_mp4(fetch(client, result["video"], "video/mp4"))
    assert (info.width, info.height) == (96, 64)


def test_video_estimate_follows_size_frames_and_steps(client):
    """After clips at two sizes, the estimate is affine in pixel-frame-steps: a fixed cost plus a cost per unit."""
    for size, frames in ((64, 4), (128, 6)):
        image = upload(client, png(size, size, seed=10))
        body = {"image": image, "model": "svd", "num_frames": frames, "width": size, "height": size, "wait_s": 120}
        assert client.post("/v1/videos/generations", json=body).status_code == 200

    def seconds(**params) -> float:
        estimate = client.get("/v1/videos/estimate", params={"model": "svd", **params}).json()
        assert estimate["measured"] is True and estimate["samples"] >= 2
        assert {k: estimate[k] for k in params} == params
        return estimate["seconds"]

    small = seconds(num_frames=8, width=64, height=64, steps=4)
    assert seconds(num_frames=8, width=128, height=128, steps=4) > small
    # equal steps in units give equal steps in time: 1×, 2× and 3× the frames
    one, two, three = (seconds(num_frames=8 * k, width=64, height=64, steps=4) for k in (1, 2, 3))
    assert two - one == pytest.approx(three - two, rel=0.02, abs=0.002) and two > one
    assert seconds(num_frames=4, width=128, height=64, steps=8) == pytest.approx(two, rel=0.02, abs=0.002)
    assert client.get("/v1/videos/estimate", params={"width": 100}).json()["error"]["field"] == "width"


def test_cost_model_recovers_a_fixed_and_a_per_unit_cost(redis_url):
    """Exact samples ms = 120 + 0.002 × units at three sizes give back both terms; one size alone is proportional."""
    import uuid

    from composition.store.timings import TimingStore, work_units
    from models.types import Metadata

    family = f"cost-{uuid.uuid4().hex[:8]}"

    async def run(client):
        store = TimingStore(client)

        def measured(units: int, batch: int = 1) -> Metadata:
            return Metadata(model="svd", source="tiny", device="cpu", batch_size=batch,
                            run_ms=batch * (120 + 0.002 * units))

        sizes = [work_units(64, 64, 4, 8), work_units(128, 128, 4, 8), work_units(256, 128, 8, 16)]
        await store.record(family, measured(sizes[0]), sizes[0])
        single = await store.get(family)
        for units in sizes * 2:
            await store.record(family, measured(units, batch=2), units)
        return single, await store.get(family), sizes

    single, fitted, sizes = on_redis(redis_url, run)
    assert single.fixed_ms == 0 and single.ms(sizes[0]) == pytest.approx(120 + 0.002 * sizes[0])
    assert fitted.samples == 7
    assert fitted.fixed_ms == pytest.approx(120, rel=1e-6) and fitted.ms_per_unit == pytest.approx(0.002, rel=1e-6)


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
    provenance = client.get(f"{result['image']['url']}/provenance").json()  # signed, with its controls' maps
    assert provenance["manifest"]["state"] == "Trusted", provenance
    assert {c["type"] for c in provenance["recipe"]["controls"]} == set(styles[style]["controls"])


def test_writing_rejects_an_unknown_style(client):
    response = client.post("/v1/writing", json={"word": "rain", "style": "baroque"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "style"


def test_prompt_optimize_answers_with_the_models_own_words_and_takes_chinese_mode_names(client):
    response = client.post("/v1/prompts/optimize", json={"prompt": "a cat on a roof", "mode": "cinematic"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["prompt"] == "a cat on a roof" and result["mode"] == "cinematic" and result["fallback"] is False
    assert result["optimized"].startswith("a cat on a roof, ")
    for alias, mode in (("艺术型", "artistic"), ("通用型", "general"), ("电影型", "cinematic")):
        response = client.post("/v1/prompts/optimize", json={"prompt": "a boat at dawn", "mode": alias})
        assert response.status_code == 200 and response.json()["mode"] == mode, response.text
    response = client.post("/v1/prompts/optimize", json={"prompt": "a boat", "mode": "抽象型"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "mode"


def test_storyboard_makes_scenes_keyframes_clips_one_video_and_exports(client):
    """... and its progress is the whole storyboard's: its own stages in order, never going back, while its scenes'
    model steps arrive as step events (the replicas' own stages never replace the storyboard's)."""
    body = {"theme": "a fox learns to fly", "num_scenes": 3, "scene_seconds": 1, "fps": 4, "style": "ink"}
    response = client.post("/v1/storyboards", json=body)
    assert response.status_code == 202
    with client.stream("GET", f"/v1/tasks/{response.json()['task_id']}/events") as stream:
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
    staged = [event for event in events if event.get("stage")]
    stages = list(dict.fromkeys(event["stage"] for event in staged))
    assert stages == ["scenes", "keyframes", "clips", "joining", "exporting", "succeeded"], stages
    progress = [event["progress"] for event in staged]
    assert progress == sorted(progress) and progress[-1] == 1 and len(set(progress)) >= 8, progress
    assert {event["stage"] for event in staged if event.get("step")} == {"keyframes", "clips"}
    task = wait_task(client, response.json()["task_id"])
    assert task["status"] == "succeeded", task
    result = task["result"]
    assert len(result["scenes"]) == len(result["keyframes"]) == len(result["clips"]) == 3
    assert all(fetch_png(client, frame).size == (64, 64) for frame in result["keyframes"])
    recipes = [client.get(f"{frame['url']}/provenance").json()["recipe"] for frame in result["keyframes"]]
    assert [(r["family"], r["seed"]) for r in recipes] == [("flux", 0), ("flux", 1), ("flux", 2)]  # signed
    clips = [read_mp4(fetch(client, clip, "video/mp4")).num_frames for clip in result["clips"]]
    assert clips == [5, 5, 5]  # 1 s at 4 fps, rounded to Wan's 4k + 1
    assert read_mp4(fetch(client, result["video"], "video/mp4")).num_frames == sum(clips)
    joined = client.get(f"{result['video']['url']}/provenance").json()  # signed: its clips are its parts
    assert joined["manifest"]["state"] == "Trusted" and joined["recipe"]["operation"] == "storyboard"
    assert joined["recipe"]["parts"] == [clip["asset_id"] for clip in result["clips"]]
    replay = client.post(f"{result['video']['url']}/replay")
    assert replay.status_code == 422 and replay.json()["error"]["field"] == "asset_id", replay.text
    assert fetch(client, result["gif"], "image/gif")[:6] == GIF_HEADER
    exported = json.loads(fetch(client, result["export"]["json"], "application/json"))
    assert [s["description"] for s in exported["scenes"]] == [s["description"] for s in result["scenes"]]
    text = fetch(client, result["export"]["text"], "text/plain").decode()
    assert text.count("SCENE ") == 3


def test_a_storyboards_clips_stay_within_the_longest_clip(client):
    """A clip has at most 129 frames: `scene_seconds` × `fps` past it is a 422 naming `scene_seconds` before any task
    exists; the LLM's own longer scenes at a high rate are cut to the longest clip (they failed after 3 attempts)."""
    before = client.get("/v1/tasks/stats").json()["by_status"]["queued"]
    refused = client.post("/v1/storyboards", json={"theme": "a quiet pond", "scene_seconds": 4.4, "fps": 30})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "scene_seconds", refused.text
    assert "133 frames" in refused.json()["error"]["message"]
    assert client.get("/v1/tasks/stats").json()["by_status"]["queued"] == before
    response = client.post("/v1/storyboards", json={"theme": "a quiet pond at dusk", "num_scenes": 1, "fps": 30})
    assert response.status_code == 202, response.text
    task = wait_task(client, response.json()["task_id"])
    assert task["status"] == "succeeded", task
    result, multiple = task["result"], client.get("/v1/info").json()["models"]["wan"]["frame_multiple"]
    assert not result["fallback"] and max(s["duration_s"] for s in result["scenes"]) * 30 > 129  # a cut happens
    frames = [read_mp4(fetch(client, clip, "video/mp4")).num_frames for clip in result["clips"]]
    assert frames == [min(clip_frames(s["duration_s"], 30, multiple), 129) for s in result["scenes"]]


def test_storyboard_needs_exactly_one_of_theme_or_script(client):
    response = client.post("/v1/storyboards", json={"theme": "x", "script": "y"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "theme"
