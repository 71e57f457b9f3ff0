"""LoRA adapters uploaded over HTTP to the running app (POST and DELETE /v1/adapters/{family}): checked by a replica
against its model as the folder's files are, usable by the next request, gone after DELETE; bad files are 422s
naming what is wrong; admin keys only when auth is on."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FluxTransformer2DModel, UNet2DConditionModel
from helpers import BASE, decode_png
from loras import lora_bytes
from secured import bearer

from config.families import Source
from models.flux import ARCHITECTURES as FLUX
from models.sdxl import ARCHITECTURES as SDXL

ROOT = Path(__file__).parents[2]
ENV = {k: v for k, v in os.environ.items() if k != "MONTAGE_API_KEY"}
ONE_MODULE = ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",)


@pytest.fixture(scope="module")
def denoisers() -> tuple[torch.nn.Module, torch.nn.Module]:
    """Denoisers of the tiny SDXL and FLUX architectures (an adapter's shapes are all that must match)."""
    return UNet2DConditionModel(**SDXL[Source.TINY]["unet"]), FluxTransformer2DModel(**FLUX[Source.TINY]["transformer"])


def add(client, data: bytes, filename: str = "upload.safetensors", family: str = "sdxl", **form):
    return client.post(f"/v1/adapters/{family}", files={"file": (filename, data)}, data=form)


def image(client, **body) -> np.ndarray:
    response = client.post("/v1/images/generations", json={"prompt": "a harbour at dawn", "model": "sdxl", "seed": 31,
                                                             **body})
    assert response.status_code == 200, response.text
    return np.asarray(decode_png(client.get(response.json()["images"][0]["url"]).content), dtype=np.int16)


def listed(client) -> dict[str, dict]:
    [sdxl] = [f for f in client.get("/v1/adapters").json()["families"] if f["family"] == "sdxl"]
    return {adapter["id"]: adapter for adapter in sdxl["adapters"]}


def test_an_uploaded_adapter_serves_the_next_request_and_delete_removes_it(client, denoisers):
    created = add(client, lora_bytes(denoisers[0], "unet", seed=11), filename="harbour-ink.safetensors")
    assert created.status_code == 201, created.text
    entry = created.json()
    assert (entry["id"], entry["family"], entry["source"], entry["rank"], entry["error"]) == \
        ("harbour-ink", "sdxl", "upload", 4, None)
    assert listed(client)["harbour-ink"]["digest"] == entry["digest"]
    base, styled = image(client), image(client, loras=[{"id": "harbour-ink"}])
    assert np.abs(styled - base).mean() > 1
    again = add(client, lora_bytes(denoisers[0], "unet", seed=12), filename="x.safetensors", id="harbour-ink")
    demo = add(client, lora_bytes(denoisers[0], "unet", seed=12), id="demo")  # the folder's adapter
    assert [(r.status_code, r.json()["error"]["field"]) for r in (again, demo)] == [(409, "id"), (409, "id")]

    assert client.delete("/v1/adapters/sdxl/harbour-ink").status_code == 204
    gone = client.post("/v1/images/generations", json={"prompt": "a harbour at dawn", "model": "sdxl",
                                                       "loras": [{"id": "harbour-ink"}]})
    assert gone.status_code == 422 and gone.json()["error"]["field"] == "loras.0.id", gone.text
    assert "harbour-ink" not in listed(client)
    missing, folder = client.delete("/v1/adapters/sdxl/harbour-ink"), client.delete("/v1/adapters/sdxl/demo")
    assert [(r.status_code, r.json()["error"]["field"]) for r in (missing, folder)] == [(404, "id"), (409, "id")]


def test_bad_uploads_are_422s_naming_the_field_and_what_is_wrong(client, denoisers):
    unet, transformer = denoisers
    cases = {  # what is sent → (field, words of the message)
        "not safetensors": (add(client, b"not a safetensors file"), "file", "not a LoRA file"),
        "rank": (add(client, lora_bytes(unet, "unet", 1, rank=160, targets=ONE_MODULE)), "file",
                 "rank 160 is over the limit of 128"),
        "another base": (add(client, lora_bytes(transformer, "unet", 2)), "file", "a LoRA of another base model"),
        "too big": (add(client, b"\0" * (3 * 2**19)), "file", "1.5 MB is over the limit of 1 MB"),
        "bad id": (add(client, lora_bytes(unet, "unet", 3), id="Harbour Ink"), "id", "is not an adapter id"),
        "bad name": (add(client, lora_bytes(unet, "unet", 3), filename="Hafen.safetensors"), "id", "give `id`"),
        "family": (add(client, lora_bytes(unet, "unet", 3), family="svd"), "family", "family"),
    }
    for case, (response, field, words) in cases.items():
        assert response.status_code == 422, (case, response.text)
        error = response.json()["error"]
        assert error["field"] == field and words in error["message"], (case, error)
    assert not {adapter["source"] for adapter in listed(client).values()} & {"upload"}


def test_only_admin_keys_upload_or_delete_adapters_when_auth_is_on(secured, denoisers):
    data = lora_bytes(denoisers[0], "unet", seed=13)

    async def steps(client, services):
        user, _ = await services.access.create_key("pat", "pro")
        admin, _ = await services.access.create_key("ops", "ops")
        files = {"file": ("quay.safetensors", data)}
        return [(await client.post("/v1/adapters/sdxl", files=files, headers=bearer(user))).status_code,
                (await client.post("/v1/adapters/sdxl", files=files)).status_code,
                (await client.post("/v1/adapters/sdxl", files=files, headers=bearer(admin))).status_code,
                (await client.delete("/v1/adapters/sdxl/quay", headers=bearer(user))).status_code,
                (await client.delete("/v1/adapters/sdxl/quay", headers=bearer(admin))).status_code]

    assert secured(steps) == [403, 401, 201, 403, 204]


def test_the_cli_adds_and_removes_an_adapter(montage, denoisers, tmp_path):
    (tmp_path / "quay-ink.safetensors").write_bytes(lora_bytes(denoisers[0], "unet", seed=14))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cluster.cli", "adapters", *args, "--url", BASE], cwd=ROOT,
                              env=ENV, capture_output=True, text=True, timeout=120)

    added = cli("add", "sdxl", str(tmp_path / "quay-ink.safetensors"), "--id", "quay")
    assert added.returncode == 0, added.stderr
    assert (json.loads(added.stdout)["id"], json.loads(added.stdout)["source"]) == ("quay", "upload")
    again = cli("add", "sdxl", str(tmp_path / "quay-ink.safetensors"), "--id", "quay")
    assert again.returncode == 1 and again.stderr.startswith("error: id:"), again.stderr
    assert cli("rm", "sdxl", "quay").returncode == 0
    assert cli("rm", "sdxl", "quay").stderr.startswith("error: id: adapter 'quay' of sdxl not found")
