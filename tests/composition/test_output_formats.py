"""`output_format` over HTTP: images as png, jpeg or webp (a rendering of the same variant: same pixels, re-encoded,
no second model call), videos as mp4, webm or gif; content type and file extension follow."""
import io

import imageio_ffmpeg
import numpy as np
import redis
from helpers import png, upload
from PIL import Image

from config import keys
from models.media import encode_image

WEBM_HEADER = b"\x1aE\xdf\xa3"


def download(client, ref: dict, content_type: str, extension: str) -> bytes:
    response = client.get(ref["url"])
    assert response.status_code == 200 and response.headers["content-type"] == content_type
    assert response.headers["content-disposition"] == f'inline; filename="{ref["asset_id"]}.{extension}"'
    return response.content


def same_pixels(signed: bytes, encoded: bytes) -> bool:
    """A rendition carries its manifest, so its bytes differ from a plain re-encoding; its pixels do not."""
    return (np.asarray(Image.open(io.BytesIO(signed))) == np.asarray(Image.open(io.BytesIO(encoded)))).all()


def test_a_format_is_a_rendering_of_the_same_variant(client, redis_url):
    body = {"prompt": "a copper weathervane shaped like a heron, engraved", "model": "flux", "width": 64,
            "height": 64}
    first = client.post("/v1/images/generations", json=body | {"output_format": "webp", "quality": 80})
    assert first.status_code == 200, first.text
    [webp] = first.json()["images"]
    assert first.json()["cache_hit"] is False and webp["format"] == "webp" and first.headers.get("X-Task-Id")
    store = redis.Redis.from_url(redis_url)
    tasks_before = store.zcard(keys.task_index())

    second = client.post("/v1/images/generations", json=body)  # the same variant as PNG: from cache, no task
    assert second.status_code == 200 and "X-Task-Id" not in second.headers
    [original] = second.json()["images"]
    assert second.json()["cache_hit"] is True and original["format"] == "png"
    assert (original["variant_id"], original["seed"]) == (webp["variant_id"], webp["seed"])
    source = download(client, original, "image/png", "png")
    webp_bytes = download(client, webp, "image/webp", "webp")  # the variant's PNG re-encoded (and signed)
    assert Image.open(io.BytesIO(webp_bytes)).size == (64, 64)
    assert same_pixels(webp_bytes, encode_image(source, "webp", 80))

    jpeg = client.post("/v1/images/generations", json=body | {"output_format": "jpeg"}).json()["images"][0]
    assert jpeg["variant_id"] == webp["variant_id"] and jpeg["format"] == "jpeg"
    assert same_pixels(download(client, jpeg, "image/jpeg", "jpeg"), encode_image(source, "jpeg"))
    again = client.post("/v1/images/generations", json=body | {"output_format": "webp", "quality": 80}).json()
    assert again["images"][0]["asset_id"] == webp["asset_id"]  # encoded once per recipe, found after
    assert store.hgetall(keys.asset_renditions(original["asset_id"])) == {
        b"webp:80": webp["asset_id"].encode(), b"jpeg:90": jpeg["asset_id"].encode()}
    assert store.zcard(keys.task_index()) == tasks_before  # no model call, no task, for any of them


def test_bad_format_fields_name_the_field(client):
    body = {"prompt": "a brass compass on a map", "model": "flux", "width": 64, "height": 64}
    for extra, field in (({"output_format": "bmp"}, "output_format"), ({"quality": 80}, "quality"),
                         ({"output_format": "jpeg", "quality": 0}, "quality")):
        response = client.post("/v1/images/generations", json=body | extra)
        assert response.status_code == 422 and response.json()["error"]["field"] == field, response.text
    response = client.post("/v1/videos/generations", json={"image": "0" * 32, "output_format": "avi"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "output_format"


def test_videos_as_webm_and_gif(client, tmp_path):
    image = upload(client, png(64, 64, seed=41))
    common = {"image": image, "model": "svd", "num_frames": 4, "fps": 8, "steps": 2, "wait_s": 120}
    webm = client.post("/v1/videos/generations", json=common | {"output_format": "webm", "gif": False}).json()
    assert webm["format"] == "webm" and webm["gif"] is None, webm
    data = download(client, webm["video"], "video/webm", "webm")
    assert data[:4] == WEBM_HEADER
    (tmp_path / "clip.webm").write_bytes(data)
    frames = imageio_ffmpeg.read_frames(str(tmp_path / "clip.webm"))
    meta = next(frames)
    assert (meta["codec"], meta["size"], sum(1 for _ in frames)) == ("vp9", (64, 64), 4)

    gif = client.post("/v1/videos/generations", json=common | {"output_format": "gif", "gif": True}).json()
    assert gif["format"] == "gif" and gif["video"] == gif["gif"]  # the clip is the GIF: encoded once
    clip = Image.open(io.BytesIO(download(client, gif["video"], "image/gif", "gif")))
    assert (clip.format, clip.n_frames, clip.size) == ("GIF", 4, (64, 64))
