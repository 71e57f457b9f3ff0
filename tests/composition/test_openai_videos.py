"""OpenAI's Videos API, driven by the official `openai` client over real HTTP against the session app: text to video
and an uploaded reference, polled to completion, downloaded and decoded; list, delete, remix; errors in OpenAI's
shape."""
import io
import json
import time

import openai
import pytest
import redis
from helpers import BASE, decode_png, png
from openai import OpenAI
from PIL import Image

from config import keys
from models.media import decode_mp4

OPENAI_BASE = f"{BASE}/openai/v1"


def connect() -> OpenAI:
    return OpenAI(base_url=OPENAI_BASE, api_key="local", max_retries=0, timeout=300)


def finished(api: OpenAI, video_id: str, timeout_s: float = 240):
    """Polls `videos.retrieve` until the video completes or fails; its progress never goes back."""
    deadline, progress = time.monotonic() + timeout_s, 0
    while (video := api.videos.retrieve(video_id)).status in ("queued", "in_progress"):
        assert video.progress >= progress and time.monotonic() < deadline, video
        progress = video.progress
        time.sleep(0.2)
    return video


def test_text_to_video_and_a_reference_image_become_clips_with_their_thumbnails(client):
    """A prompt alone makes a FLUX keyframe, then a Wan clip of the asked seconds; an uploaded reference is animated
    by SVD; each downloads as an MP4 of its frames, a JPEG thumbnail and a JPEG sprite sheet."""
    api = connect()
    from_text = api.videos.create(prompt=f"a red kite over a harbour {time.time_ns()}", model="sora-2", seconds="1",
                                  size="64x64")
    from_image = api.videos.create(prompt="waves", model="svd", size="64x64",
                                   input_reference=("ref.png", png(64, 64, seed=1771), "image/png"))
    assert from_text.status in ("queued", "in_progress")  # a free runner may have started it already
    assert from_text.id.startswith("video_") and from_text.model == "wan"
    text_done, image_done = finished(api, from_text.id), finished(api, from_image.id)
    assert (text_done.status, text_done.progress, text_done.size) == ("completed", 100, "64x64")
    assert text_done.completed_at >= text_done.created_at and text_done.expires_at > text_done.completed_at
    assert image_done.status == "completed" and image_done.prompt == "waves"
    assert decode_mp4(api.videos.download_content(from_text.id).read()).shape == (17, 64, 64, 3)  # 1 s at 16 fps
    assert decode_mp4(api.videos.download_content(from_image.id, variant="video").read()).shape == (8, 64, 64, 3)
    for video in (from_text, from_image):
        for variant in ("thumbnail", "spritesheet"):
            picture = Image.open(io.BytesIO(api.videos.download_content(video.id, variant=variant).read()))
            assert picture.format == "JPEG" and picture.width >= 64
    task = client.get(f"/v1/tasks/{from_text.id.removeprefix('video_')}").json()  # the native task behind it
    keyframe = client.get(task["result"]["keyframe"]["url"])
    assert keyframe.status_code == 200 and decode_png(keyframe.content).size == (64, 64)


def test_list_pages_delete_and_remix(client):
    api = connect()
    made = [api.videos.create(prompt=f"a lantern {i} {time.time_ns()}", model="wan", size="64x64") for i in range(3)]
    for video in made:
        assert finished(api, video.id).status == "completed"
    first = api.videos.list(limit=2, order="desc")
    assert [v.id for v in first.data] == [made[2].id, made[1].id] and first.has_more
    second = api.videos.list(limit=2, order="desc", after=first.data[-1].id)
    assert second.data[0].id == made[0].id
    remix = api.videos.remix(made[0].id, prompt="a lantern in the snow")
    assert remix.id != made[0].id and remix.remixed_from_video_id == made[0].id and remix.prompt == "a lantern in the snow"
    assert finished(api, remix.id).status == "completed"
    deleted = api.videos.delete(made[0].id)
    assert deleted.id == made[0].id and deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        api.videos.download_content(made[0].id)
    with pytest.raises(openai.NotFoundError):
        api.videos.retrieve(made[0].id)
    assert made[0].id not in [v.id for v in api.videos.list(limit=100).data]
    after_deleted = api.videos.list(limit=2, order="asc", after=made[0].id)  # a deleted cursor keeps its place
    assert [v.id for v in after_deleted.data] == [made[1].id, made[2].id]
    with pytest.raises(openai.BadRequestError) as unknown:
        api.videos.list(after="video_" + "0" * 32)
    assert unknown.value.body["param"] == "after"


def test_bad_params_are_400s_naming_them_and_a_cancelled_video_is_failed(client, redis_url):
    api = connect()
    for params, param in (({"seconds": "999"}, "seconds"), ({"seconds": "0"}, "seconds"), ({"size": "60x60"}, "size"),
                          ({"model": "veo"}, "model"),
                          ({"model": "svd", "extra_body": {"acceleration": "step_cache"}}, "acceleration"),
                          ({"size": "2048x2048"}, "size")):
        with pytest.raises(openai.BadRequestError) as raised:
            api.videos.create(prompt="a fox", **params)
        assert raised.value.body["param"] == param, raised.value.body
    video = api.videos.create(prompt=f"a slow fox {time.time_ns()}", model="wan", size="64x64",
                              extra_body={"acceleration": "step_cache"})  # Montage's extension, as natively
    job = json.loads(redis.Redis.from_url(redis_url).hget(keys.task(video.id.removeprefix("video_")), "request"))
    assert job["acceleration"] == "step_cache", job
    assert client.delete(f"/v1/tasks/{video.id.removeprefix('video_')}").status_code == 200
    failed = api.videos.retrieve(video.id)
    assert failed.status == "failed" and failed.error.code == "cancelled" and failed.error.message
    with pytest.raises(openai.ConflictError):
        api.videos.download_content(video.id)
    for odd in ("video_nope", "video_" + "0" * 32, video.id.upper()):  # as OpenAI: not found
        with pytest.raises(openai.NotFoundError) as raised:
            api.videos.retrieve(odd)
        assert raised.value.body["param"] == "video_id", raised.value.body
    assert client.get("/openai/v1/videos/video_nope/content").status_code == 404


def test_async_client_with_auth_on_sees_its_own_videos_only(openai_secured):
    run = time.time_ns()

    async def steps(connect, services):
        ana, _ = await services.access.create_key(f"va-{run}", "pro")
        bob, _ = await services.access.create_key(f"vb-{run}", "pro")
        with pytest.raises(openai.AuthenticationError):
            await connect("mtg_nope").videos.create(prompt="a tram")
        made = await connect(ana).videos.create(prompt=f"a tram in the snow {run}", model="wan", size="64x64",
                                                extra_body={"user": "mallory"})  # auth on: the key's user wins
        record = await services.tasks.get(made.id.removeprefix("video_"))
        with pytest.raises(openai.NotFoundError):
            await connect(bob).videos.retrieve(made.id)
        listed = [[v.id for v in (await connect(key).videos.list(limit=100)).data] for key in (ana, bob)]
        return made, record, listed

    made, record, (ana_sees, bob_sees) = openai_secured(steps)
    assert made.status in ("queued", "in_progress") and record.user_id == f"va-{run}" and record.kind == "video"
    assert made.id in ana_sees and made.id not in bob_sees
