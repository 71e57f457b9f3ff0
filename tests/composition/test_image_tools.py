"""Image tools over HTTP: image to image (a source and a strength on /v1/images/generations give an image of the
source's size whose task ran steps × strength steps) and inpainting (/v1/images/inpaint keeps every pixel outside the
mask), outpainting (/v1/images/outpaint: the image on a larger canvas); sources, strengths, masks and canvases key
the result; bad input names its field."""
import numpy as np
import pytest
from helpers import decode_png, png, upload

from models.images import mask_png

BODY = {"prompt": "a harbour at dawn, watercolour", "steps": 4, "strength": 0.5, "seed": 11}


@pytest.mark.parametrize("model", ["sdxl", "flux"])
def test_a_source_and_strength_give_its_size_and_run_steps_times_strength(client, model):
    source = upload(client, png(96, 64, 31))
    response = client.post("/v1/images/generations", json=BODY | {"image": source, "model": model})
    assert response.status_code == 200, response.text
    result = response.json()
    image = result["images"][0]
    assert decode_png(client.get(image["url"]).content).size == (96, 64)
    task = client.get(f"/v1/tasks/{response.headers['X-Task-Id']}").json()
    assert (task["step"], task["steps"]) == (2, 2)  # the last half of the 4 steps
    assert client.post("/v1/images/generations",
                       json=BODY | {"image": source, "model": model}).json()["cache_hit"] is True
    # Another strength or another source is another image.
    for change in ({"strength": 0.75}, {"image": upload(client, png(96, 64, 32))}):
        other = client.post("/v1/images/generations", json=BODY | {"image": source, "model": model} | change)
        assert other.status_code == 200 and other.json()["prompt_key"] != result["prompt_key"]


@pytest.mark.parametrize("change, status, field", [
    ({"strength": 1.5}, 422, "strength"), ({"strength": -0.1}, 422, "strength"), ({"image": None}, 422, "strength"),
    ({"image": "ab" * 16}, 404, "image")])
def test_bad_image_to_image_input_names_its_field(client, change, status, field):
    source = upload(client, png(64, 64, 33))
    response = client.post("/v1/images/generations", json=BODY | {"image": source} | change)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


def _mask(width: int, height: int, box: tuple[int, int, int, int] | None) -> bytes:
    wanted = np.zeros((height, width), bool)
    if box:
        wanted[box[1]:box[3], box[0]:box[2]] = True
    return mask_png(wanted)


def test_an_inpainting_repaints_the_mask_and_keeps_every_other_pixel(client):
    source_png = png(96, 64, 34)
    source, mask = upload(client, source_png), upload(client, _mask(96, 64, (16, 8, 64, 40)))
    body = {"prompt": "a red balloon", "steps": 2, "seed": 5, "image": source, "mask": mask}
    response = client.post("/v1/images/inpaint", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    out = np.asarray(decode_png(client.get(result["images"][0]["url"]).content).convert("RGB"))
    original = np.asarray(decode_png(source_png).convert("RGB"))
    kept = np.ones((64, 96), bool)
    kept[8:40, 16:64] = False
    assert out.shape == (64, 96, 3)
    np.testing.assert_array_equal(out[kept], original[kept])  # exactly: the tiny VAE's round trip is off by up to 1.0
    assert np.abs(out[~kept].astype(int) - original[~kept]).mean() > 5
    assert client.post("/v1/images/inpaint", json=body).json()["cache_hit"] is True
    other = client.post("/v1/images/inpaint", json=body | {"mask": upload(client, _mask(96, 64, (0, 0, 8, 8)))})
    assert other.status_code == 200 and other.json()["prompt_key"] != result["prompt_key"]


@pytest.mark.parametrize("mask, message", [(_mask(64, 32, (0, 0, 8, 8)), "mask is 64x32"),
                                           (_mask(96, 64, None), "nothing to repaint"),
                                           (None, "no alpha channel")])
def test_a_mask_of_another_size_or_with_nothing_to_repaint_is_a_422_naming_it(client, mask, message):
    body = {"prompt": "a red balloon", "steps": 2, "image": upload(client, png(96, 64, 35))}
    if mask is not None:
        body["mask"] = upload(client, mask)
    response = client.post("/v1/images/inpaint", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "mask" and message in response.json()["error"]["message"]


def test_an_outpainting_extends_the_canvas_by_margins_or_aspect_and_keeps_the_image(client):
    source_png = png(64, 64, 36)
    source, original = upload(client, source_png), np.asarray(decode_png(source_png).convert("RGB"))
    body = {"prompt": "the rest of the meadow", "steps": 2, "seed": 2, "image": source, "model": "flux"}
    for geometry, size, place in (({"left": 32}, (96, 64), (32, 0)), ({"aspect": "2:1"}, (128, 64), (32, 0)),
                                  ({"bottom": 20}, (64, 96), (0, 0))):  # 84 rounded up to the grid: 96
        response = client.post("/v1/images/outpaint", json=body | geometry)
        assert response.status_code == 200, response.text
        out = np.asarray(decode_png(client.get(response.json()["images"][0]["url"]).content).convert("RGB"))
        assert out.shape[1::-1] == size
        np.testing.assert_array_equal(out[place[1]:place[1] + 64, place[0]:place[0] + 64], original)


@pytest.mark.parametrize("geometry, field", [({"right": 600, "bottom": 600}, "right"), ({"aspect": "1:1"}, "aspect"),
                                             ({}, "left"), ({"left": 8, "aspect": "2:1"}, "aspect"),
                                             ({"left": 8, "width": 128}, "width")])
def test_an_outpainting_past_the_familys_size_or_without_geometry_is_a_422_naming_it(client, geometry, field):
    body = {"prompt": "more meadow", "image": upload(client, png(64, 64, 37))} | geometry
    response = client.post("/v1/images/outpaint", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_an_upscale_doubles_the_size_tile_by_tile_and_past_4096_is_a_422_naming_its_field(client):
    source = upload(client, png(48, 32, 38))
    response = client.post("/v1/images/upscale", json={"image": source, "scale": 2, "steps": 4, "strength": 0.5,
                                                       "seed": 1})
    assert response.status_code == 200, response.text
    assert decode_png(client.get(response.json()["images"][0]["url"]).content).size == (96, 64)
    task = client.get(f"/v1/tasks/{response.headers['X-Task-Id']}").json()
    assert (task["step"], task["steps"]) == (4, 4)  # 2 tiles of 64² × 2 steps run
    for image, scale, field in ((png(1100, 8, 39), 4, "scale"), (png(2100, 8, 40), 2, "image")):
        refused = client.post("/v1/images/upscale", json={"image": upload(client, image), "scale": scale})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field, refused.text


def test_a_request_whose_strength_leaves_no_step_still_counts_itself_in_fused_requests(client):
    """The tiny families take 2 steps: an upscale at its default strength (0.35) or image to image at 0.25 runs no
    denoiser step, and its `fused_requests` is still the request itself."""
    source = upload(client, png(48, 32, 43))
    for path, body in (("/v1/images/upscale", {"image": source, "scale": 2, "seed": 2}),
                       ("/v1/images/generations", {"image": source, "prompt": "a quiet pier", "strength": 0.25})):
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
        assert response.json()["images"][0]["metadata"]["fused_requests"] == 1, (path, response.json())


def test_negative_prompts_count_on_flux_with_true_cfg_and_weights_on_sdxl(client):
    body = {"prompt": "a (red:1.4) kite", "negative_prompt": "grey", "steps": 2, "seed": 3, "width": 64, "height": 64}
    guided = client.post("/v1/images/generations", json=body | {"model": "flux", "true_cfg_scale": 3.0})
    plain = client.post("/v1/images/generations", json=body | {"model": "flux"})
    assert guided.status_code == plain.status_code == 200, guided.text
    assert guided.json()["prompt_key"] != plain.json()["prompt_key"]
    weighted = client.post("/v1/images/generations", json=body | {"model": "sdxl", "prompt_weighting": True})
    assert weighted.status_code == 200, weighted.text
    for prompt, problem in (("a ((red kite", "unbalanced"), ("(((((x)))))", "deeper than 4")):  # before any parse
        refused = client.post("/v1/images/generations", json=body | {"model": "sdxl", "prompt_weighting": True,
                                                                     "prompt": prompt, "wait_s": 0})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "prompt", refused.text
        assert problem in refused.json()["error"]["message"]
    for model, field in (("sdxl", "true_cfg_scale"), ("flux", "prompt_weighting")):
        refused = client.post("/v1/images/generations", json=body | {"model": model, field: 3.0 if "cfg" in field
                                                                     else True})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field, refused.text
