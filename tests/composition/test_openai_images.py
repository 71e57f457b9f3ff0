"""The OpenAI-compatible Images API, driven by the official `openai` client: sync over real HTTP against the session
app, async in-process with auth required (the API key is the bearer token); results decoded, errors in OpenAI's
shape."""
import asyncio
import base64
import hashlib
import io
import time

import numpy as np
import openai
import pytest
from PIL import Image
from helpers import BASE, decode_png, png
from openai import AsyncOpenAI, OpenAI

OPENAI_BASE = f"{BASE}/openai/v1"


def connect() -> OpenAI:
    return OpenAI(base_url=OPENAI_BASE, api_key="local", max_retries=0, timeout=300)


def test_generate_b64_then_urls_are_the_native_routes_variants(client):
    """An alias (dall-e-3 → flux) renders n PNGs of the asked size; the same request by family name and by the native
    route is served the same variants from the cache."""
    prompt = "a red kite over a harbour at dawn"
    raw = connect().images.with_raw_response.generate(prompt=prompt, model="dall-e-3", n=2, size="64x48",
                                                      response_format="b64_json", user="ana")
    made, task_id = raw.parse(), raw.headers["x-task-id"]  # the task it ran as, as the native routes name it
    pngs = [base64.b64decode(item.b64_json) for item in made.data]
    assert [decode_png(data).size for data in pngs] == [(64, 48), (64, 48)] and pngs[0] != pngs[1]
    assert all(item.url is None and item.revised_prompt == prompt for item in made.data)
    assert abs(made.created - time.time()) < 120
    again = connect().images.generate(prompt=prompt, model="flux", n=2, size="64x48", user="ana")
    assert all(item.b64_json is None and item.url.startswith(f"{BASE}/v1/assets/") for item in again.data)
    assert [client.get(item.url).content for item in again.data] == pngs
    native = client.post("/v1/images/generations", json={"prompt": prompt, "model": "flux", "n": 2, "width": 64,
                                                          "height": 48}).json()
    assert native["cache_hit"] and [BASE + image["url"] for image in native["images"]] == [i.url for i in again.data]
    tasks = client.get("/v1/tasks", params={"user_id": "ana", "kind": "image"}).json()
    assert [(task["id"], task["status"]) for task in tasks["tasks"]] == [(task_id, "succeeded")]  # one generation


def test_acceleration_is_montages_extension_as_on_the_native_route(client):
    """`extra_body={"acceleration": "step_cache"}` renders what the native route renders with it: another prompt key
    than without, whose variant the native route then serves from the cache."""
    prompt = f"a tin robot watering tulips {time.time_ns()}"
    raw = connect().images.with_raw_response.generate(prompt=prompt, model="flux", size="64x64",
                                                      extra_body={"acceleration": "step_cache"})
    task = client.get(f"/v1/tasks/{raw.headers['x-task-id']}").json()
    assert "steps_skipped" in task["result"]["images"][0]["metadata"]
    body = {"prompt": prompt, "model": "flux", "width": 64, "height": 64}
    cached = client.post("/v1/images/generations", json=body | {"acceleration": "step_cache"}).json()
    assert cached["cache_hit"] and [BASE + image["url"] for image in cached["images"]] == [raw.parse().data[0].url]
    assert client.post("/v1/images/generations", json=body).json()["prompt_key"] != cached["prompt_key"]


def test_async_client_edits_an_upload_while_it_generates(client):
    """`images.edit` uploads the image (stored as POST /v1/assets stores it) and Kontext edits it; a generation runs
    alongside on the same client."""
    source = png(64, 64, seed=41)

    async def run():
        async with AsyncOpenAI(base_url=OPENAI_BASE, api_key="local", max_retries=0, timeout=300) as oai:
            return await asyncio.gather(
                oai.images.edit(image=("in.png", source, "image/png"), prompt="add snow to the roofs", size="64x64",
                                response_format="b64_json"),
                oai.images.generate(prompt="a fox asleep in a field of tulips", model="sdxl", size="64x64"))

    edit, made = asyncio.run(run())
    edited = base64.b64decode(edit.data[0].b64_json)
    assert decode_png(edited).size == (64, 64) and edit.data[0].revised_prompt == "add snow to the roofs"
    assert decode_png(client.get(made.data[0].url).content).size == (64, 64)
    upload_id = hashlib.sha256(source).hexdigest()[:32]
    assert client.get(f"/v1/assets/{upload_id}").content == source
    native = client.post("/v1/images/edits", json={"image": upload_id, "prompt": "add snow to the roofs", "width": 64,
                                                    "height": 64}).json()
    assert native["cache_hit"] and client.get(native["images"][0]["url"]).content == edited


def test_what_dall_e_3_and_gpt_image_1_apps_send_is_accepted_and_means_steps_style_and_encoding(client):
    """quality hd is 1.5× the family's default steps (tiny FLUX: 2 → 3), style vivid the native style, output_format
    and output_compression the native encoding: the native request saying so is served the same image."""
    prompt = "a paper lantern festival over a river"
    made = connect().images.generate(prompt=prompt, model="dall-e-3", size="64x64", quality="hd", style="vivid",
                                     output_format="jpeg", output_compression=60, background="opaque",
                                     moderation="low", response_format="b64_json")
    data = base64.b64decode(made.data[0].b64_json)
    assert data[:3] == b"\xff\xd8\xff" and made.data[0].revised_prompt == f"{prompt}, vivid style"
    native = client.post("/v1/images/generations", json={
        "prompt": prompt, "model": "flux", "width": 64, "height": 64, "steps": 3, "style": "vivid",
        "output_format": "jpeg", "quality": 60}).json()
    assert native["cache_hit"] and client.get(native["images"][0]["url"]).content == data
    natural = connect().images.generate(prompt=prompt, model="gpt-image-1", size="64x64", quality="low",
                                        style="natural", background="auto")
    assert natural.data[0].revised_prompt == prompt
    low = client.post("/v1/images/generations", json={"prompt": prompt, "model": "flux", "width": 64, "height": 64,
                                                      "steps": 1}).json()
    assert low["cache_hit"] and BASE + low["images"][0]["url"] == natural.data[0].url


def test_an_edit_keeps_the_uploads_size_and_a_mask_or_transparency_is_a_400_naming_it(montage):
    source = png(128, 128, seed=43)
    edit = connect().images.edit(image=("in.png", source, "image/png"), prompt="add a moon", quality="low",
                                 output_format="png", response_format="b64_json")
    assert decode_png(base64.b64decode(edit.data[0].b64_json)).size == (128, 128)
    listed = connect().images.edit(image=[("in.png", source, "image/png")], prompt="add a moon", quality="low",
                                   output_format="png", response_format="b64_json")  # sent as `image[]`
    assert listed.data[0].b64_json == edit.data[0].b64_json
    with pytest.raises(openai.BadRequestError) as two:
        connect().images.edit(image=[("a.png", source, "image/png"), ("b.png", source, "image/png")], prompt="x")
    assert two.value.param == "image[]" and "one image; 2 were sent" in two.value.message
    refused = {}
    with pytest.raises(openai.BadRequestError) as refused["mask"]:
        connect().images.edit(image=("in.png", source, "image/png"), prompt="add a moon",
                              mask=("mask.png", png(128, 128, seed=44), "image/png"))
    with pytest.raises(openai.BadRequestError) as refused["size"]:  # a mask of another size, named as such
        connect().images.edit(image=("in.png", source, "image/png"), prompt="add a moon",
                              mask=("mask.png", png(64, 64, seed=44, mode="L"), "image/png"))
    with pytest.raises(openai.BadRequestError) as refused["background"]:
        connect().images.generate(prompt="a moon", size="64x64", background="transparent")
    with pytest.raises(openai.BadRequestError) as refused["output_format"]:
        connect().images.generate(prompt="a moon", size="64x64", output_format="gif")
    size = refused.pop("size").value
    assert size.param == "mask" and "mask is 64x64, the image 128x128" in size.message
    assert {param: caught.value.param for param, caught in refused.items()} == {param: param for param in refused}
    assert "no alpha channel" in refused["mask"].value.message  # an opaque mask repaints nothing
    assert "transparent" in refused["background"].value.message


def test_an_edit_with_a_mask_inpaints_its_transparent_pixels_on_the_models_family(montage):
    source = png(64, 64, seed=45)
    rgba = decode_png(png(64, 64, seed=46)).convert("RGBA")
    hole = Image.new("RGBA", (32, 16), (0, 0, 0, 0))
    rgba.paste(hole, (16, 8))  # OpenAI's mask: the fully transparent pixels are repainted
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    made = connect().images.edit(image=("in.png", source, "image/png"), prompt="a moon", model="dall-e-2",
                                 mask=("mask.png", buffer.getvalue(), "image/png"), response_format="b64_json")
    out = np.asarray(decode_png(base64.b64decode(made.data[0].b64_json)).convert("RGB"))
    kept = np.ones((64, 64), bool)
    kept[8:24, 16:48] = False
    assert out.shape == (64, 64, 3)
    np.testing.assert_array_equal(out[kept], np.asarray(decode_png(source).convert("RGB"))[kept])
    assert np.abs(out[~kept].astype(int) - np.asarray(decode_png(source).convert("RGB"))[~kept]).mean() > 5


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"model": "dall-e-9"}, "model"),
    ({"size": "100x7"}, "size"),
    ({"size": "1024x1024"}, "size"),  # beyond the 512² a tiny replica serves
    ({"size": "large"}, "size"),
    ({"n": 9}, "n"),
    ({"n": 0}, "n"),
    ({"response_format": "jpeg"}, "response_format"),
    ({"user": "ana@example.com"}, "user"),
    ({"extra_body": {"quality_level": "hd"}}, "quality_level"),
    ({"model": "sdxl", "extra_body": {"acceleration": "step_cache"}}, "acceleration"),  # sdxl has no step cache
])
def test_bad_generation_input_is_an_openai_400_naming_the_param(montage, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        connect().images.generate(prompt="a lighthouse in fog", **kwargs)
    error = caught.value
    assert error.status_code == 400 and error.param == param and error.type == "invalid_request_error"
    assert set(error.body) == {"message", "type", "param", "code"} and error.body["message"].startswith(param)
    assert "Traceback" not in error.message


def test_bad_edit_input_and_limits_answer_in_openai_shape(client):
    with pytest.raises(openai.BadRequestError) as not_kontext:
        connect().images.edit(image=("in.png", png(64, 64), "image/png"), prompt="add snow", model="dall-e-2")
    with pytest.raises(openai.BadRequestError) as not_an_image:
        connect().images.edit(image=("in.png", b"not an image", "image/png"), prompt="add snow")
    assert not_kontext.value.param == "model" and "flux" in not_kontext.value.message
    assert not_an_image.value.param == "image" and not_an_image.value.code == "unsupported_media_type"
    too_large = client.post("/openai/v1/images/generations", json={"prompt": "x" * 2**21})
    assert too_large.status_code == 413 and too_large.json()["error"]["type"] == "invalid_request_error"
    missing = client.post("/openai/v1/images/variations", json={})
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"message", "type", "param", "code"}


def test_the_api_key_is_the_bearer_token_with_its_user_quota_and_rate(openai_secured):
    run = time.time_ns()

    async def steps(connect, services):
        pro, _ = await services.access.create_key(f"oa-{run}", "pro")
        tight, _ = await services.access.create_key(f"ob-{run}", "tight")
        slow, _ = await services.access.create_key(f"oc-{run}", "slow")
        errors = {}
        with pytest.raises(openai.AuthenticationError) as errors["key"]:
            await connect("mtg_nope").images.generate(prompt="a tram in the snow")
        made = await connect(pro).images.generate(prompt=f"a tram in the snow {run}", size="64x64", user="mallory",
                                                  response_format="b64_json")
        tasks = await services.tasks.list(f"oa-{run}")
        for _ in range(7):  # the tight tier's daily images, spent
            assert await services.access.take_quota(f"ob-{run}", "images", 7)
        with pytest.raises(openai.RateLimitError) as errors["quota"]:
            await connect(tight).images.generate(prompt=f"a tram in the rain {run}", size="64x64")
        rated = []
        for _ in range(3):  # 0.5/s with a burst of 2: the third call is refused before its body is looked at
            with pytest.raises(openai.APIStatusError) as caught:
                await connect(slow).images.generate(prompt="a tram", size="7x7")
            rated.append((caught.value.status_code, caught.value.code))
        return made, tasks, errors, rated

    made, tasks, errors, rated = openai_secured(steps)
    assert decode_png(base64.b64decode(made.data[0].b64_json)).size == (64, 64)
    assert [(task.kind, task.user_id, task.status) for task in tasks] == [("image", f"oa-{run}", "succeeded")]
    key = errors["key"].value
    assert key.status_code == 401 and key.code == "invalid_api_key" and key.param is None
    quota = errors["quota"].value
    assert quota.status_code == 429 and quota.type == quota.code == "insufficient_quota"
    assert quota.response.headers["x-should-retry"] == "false"
    assert rated == [(400, "invalid_value"), (400, "invalid_value"), (429, "rate_limit_exceeded")]


def test_a_call_not_done_within_wait_s_is_a_504_naming_its_task(openai_secured):
    run = time.time_ns()

    async def steps(connect, services):
        key, _ = await services.access.create_key(f"od-{run}", "pro")
        with pytest.raises(openai.InternalServerError) as caught:
            await connect(key).images.generate(prompt=f"a lighthouse in a gale {run}", size="64x64")
        task_id = caught.value.response.headers["x-task-id"]
        record = await services.tasks.get(task_id)
        await services.tasks.cancel(task_id)
        return caught.value, record

    error, record = openai_secured(steps, openai={"wait_s": 0.01})
    assert error.status_code == 504 and error.type == "server_error" and error.code == "timeout"
    assert record.status in ("queued", "running") and f"/v1/tasks/{record.id}" in error.message
