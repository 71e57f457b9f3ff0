"""LoRA adapters through the running app (tiny models, real Serve and Redis): the demo adapters each image family
ships, `loras` on the image routes, styles and OpenAI's generations, the dedup key's scale, 422s naming the field."""
import numpy as np
import openai
import pytest
from helpers import BASE, pixels, png, upload
from openai import OpenAI

DEMO = [{"id": "demo", "scale": 1.0}]


def fetched(client, image: dict) -> np.ndarray:
    return pixels(client.get(image["url"]).content)


def generate(client, **body) -> dict:
    response = client.post("/v1/images/generations", json={"prompt": "a lantern on a pier", "seed": 21, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_each_image_family_lists_its_demo_adapter(client):
    listed = client.get("/v1/adapters").json()["families"]
    assert [family["family"] for family in listed] == ["sdxl", "flux"]
    for family in listed:
        [demo] = [a for a in family["adapters"] if a["id"] == "demo"]
        assert (demo["family"], demo["source"], demo["rank"], demo["error"]) == (family["family"], "file", 4, None)
        assert family["max_per_request"] == 3 and family["replicas"]  # each live replica says what it holds


def test_an_adapter_changes_the_image_its_scale_is_part_of_the_key_and_repeats_hit_the_cache(client):
    base = generate(client, model="sdxl")
    assert generate(client, model="sdxl", loras=None)["images"] == base["images"]  # null: no adapters
    styled = generate(client, model="sdxl", loras=DEMO)
    off = generate(client, model="sdxl", loras=[{"id": "demo", "scale": 0}])
    keys = {base["prompt_key"], styled["prompt_key"], off["prompt_key"]}
    assert len(keys) == 3 and not styled["cache_hit"] and not off["cache_hit"]
    assert styled["images"][0]["metadata"]["extra"]["loras"] == DEMO
    assert np.abs(fetched(client, styled["images"][0]) - fetched(client, base["images"][0])).mean() > 1
    # Scale 0 is the base image; within a level, since either may share its denoiser forwards with another job
    # (continuous batching: float noise of the batch's composition).
    assert np.abs(fetched(client, off["images"][0]) - fetched(client, base["images"][0])).max() <= 1
    again = generate(client, model="sdxl", loras=DEMO)
    assert again["cache_hit"] and again["images"][0]["asset_id"] == styled["images"][0]["asset_id"]
    [sdxl] = [f for f in client.get("/v1/adapters").json()["families"] if f["family"] == "sdxl"]
    [demo] = [a for a in sdxl["adapters"] if a["id"] == "demo"]
    assert demo["replicas"] and sum(r["loads"] for r in sdxl["replicas"]) >= 1


def test_flux_text_to_image_and_kontext_edits_take_adapters(client):
    base = generate(client, model="flux")
    styled = generate(client, model="flux", loras=DEMO)
    assert np.abs(fetched(client, styled["images"][0]) - fetched(client, base["images"][0])).mean() > 0.5
    source = upload(client, png(64, 64, seed=4))
    edits = [client.post("/v1/images/edits", json={"image": source, "prompt": "make it dusk", "seed": 2, **extra})
             for extra in ({}, {"loras": DEMO})]
    assert [e.status_code for e in edits] == [200, 200], edits[1].text
    plain, edited = (e.json() for e in edits)
    assert plain["prompt_key"] != edited["prompt_key"]
    assert edited["images"][0]["metadata"]["extra"]["loras"] == DEMO


def test_bad_adapters_are_422s_naming_the_field(client):
    def refused(loras, model="sdxl") -> str:
        response = client.post("/v1/images/generations", json={"prompt": "a pier", "model": model, "loras": loras})
        assert response.status_code == 422, response.text
        return response.json()["error"]["field"]

    assert refused([{"id": "no-such-adapter"}]) == "loras.0.id"
    assert refused([{"id": "demo"}, {"id": "missing"}], model="flux") == "loras.1.id"
    assert refused([{"id": "../demo"}]) == "loras.0.id"
    assert refused([{"id": "demo", "scale": 9}]) == "loras.0.scale"
    assert refused([{"id": "demo", "scale": "NaN"}]) == "loras.0.scale"
    assert refused("demo") == "loras"
    assert refused([{"id": "demo"}, {"id": "demo"}]) == "loras"
    assert refused([{"id": f"a{i}"} for i in range(4)]) == "loras"  # over the family's max_per_request (3)


def test_a_souls_style_carries_its_adapters_into_its_variants(client):
    style = {"prompt": "a lighthouse keeper, woodcut", "model": "sdxl", "loras": DEMO}
    bad = client.put("/v1/styles/keeper-bad", json={**style, "loras": [{"id": "nope"}]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "loras.0.id"
    assert client.put("/v1/styles/keeper", json=style).status_code == 200
    image = client.get("/v1/souls/keeper/image", params={"user_id": "lia", "cue": "on the stairs"}).json()
    assert image["metadata"]["extra"]["loras"] == DEMO


def test_openai_generations_take_loras_in_the_extra_body():
    connect = OpenAI(base_url=f"{BASE}/openai/v1", api_key="local", max_retries=0, timeout=300)
    made = connect.images.generate(prompt="a lantern on a pier", model="sdxl", size="64x64",
                                   extra_body={"loras": DEMO})
    assert made.data[0].url
    with pytest.raises(openai.BadRequestError) as refused:
        connect.images.generate(prompt="a lantern", model="sdxl", extra_body={"loras": [{"id": "nope"}]})
    assert refused.value.status_code == 400 and refused.value.param == "loras.0.id"
