"""Regional torch.compile on the tiny source: compiled while the replica starts, output equal to eager."""
import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from config.families import FluxArgs, SDXLArgs
from helpers import png
from models.types import Control, EditRequest, ImageRequest

SIZE = dict(width=64, height=64, steps=2, guidance=5.0)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def test_an_sdxl_replica_compiles_while_it_starts_and_then_matches_eager():
    from deployments.families import SDXLDeployment
    from models.sdxl import SDXL

    replica = SDXLDeployment(SDXLArgs(compile=True))  # Serve routes nothing to a replica before __init__ returns
    compiled_at_start = counters["stats"]["unique_graphs"]
    assert compiled_at_start > 0
    eager = SDXL(SDXLArgs())
    for request in (ImageRequest(prompt="a red fox", seed=3, **SIZE),
                    ImageRequest(prompt="a castle", seed=4, controls=(Control(type="canny", image=png()),), **SIZE)):
        for batch in ([request], [request, request.model_copy(update={"seed": 9})]):
            assert np.abs(replica.model.run(batch) - eager.run(batch)).max() <= 1e-4
    assert counters["stats"]["unique_graphs"] == compiled_at_start  # warm-up covered plain, control, batch 1 and 2


def test_flux_warmup_compiles_text_to_image_and_edit_and_matches_eager():
    from models.flux import Flux

    compiled, eager = Flux(FluxArgs(compile=True, max_sequence_length=64)), Flux(FluxArgs(max_sequence_length=64))
    compiled.warmup()
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    t2i = [ImageRequest(prompt="a lighthouse", seed=1, **SIZE)]
    edit = [EditRequest(prompt="make it night", image=png(seed=2), seed=2, **SIZE)]
    assert np.abs(compiled.run(t2i) - eager.run(t2i)).max() <= 1e-4
    assert np.abs(compiled.run_edit(edit) - eager.run_edit(edit)).max() <= 1e-4
    assert counters["stats"]["unique_graphs"] == graphs


def test_adapters_hot_swap_into_a_compiled_unet_without_recompiling_and_match_eager(tmp_path):
    """With compile on, adapters enter the compiled UNet's LoRA slots (hot-swap) and scales are tensor values: new
    adapters, scales and sets (and none) compile nothing more, and each image equals eager SDXL's with the same
    adapters."""
    from config.families import AdapterPolicy
    from models.adapter_files import write_demo
    from models.sdxl import SDXL
    from models.types import Lora

    eager = SDXL(SDXLArgs(adapters=AdapterPolicy(folder=tmp_path, demo=False)))
    for seed, name in enumerate(("ink", "neon", "clay")):
        write_demo(tmp_path / f"{name}.safetensors", eager.union.unet, "unet", seed)
    compiled = SDXL(SDXLArgs(compile=True, adapters=AdapterPolicy(folder=tmp_path, max_rank=8, max_per_request=2)))
    compiled.warmup()
    compiled_at_start = counters["stats"]["unique_graphs"]
    assert compiled_at_start > 0 and compiled.adapters.catalogue()["ink"].error is None
    sets = [(Lora(id="ink"),), (Lora(id="neon", scale=0.5),), (), (Lora(id="ink"), Lora(id="clay", scale=-1.0)),
            (Lora(id="neon"),), (Lora(id="ink", scale=0.0),)]
    images = []
    for loras in sets:
        request = ImageRequest(prompt="a red fox", seed=3, loras=loras, **SIZE)
        image = compiled.run([request])
        images.append(image)
        assert np.abs(image - eager.run([request])).max() <= 1e-4, loras
    assert np.abs(images[0] - images[2]).mean() > 1e-3 and np.abs(images[5] - images[2]).max() <= 1e-5
    assert (compiled.adapters.counts["loads"], compiled.adapters.counts["evictions"]) == (5, 3)  # 2 slots, LRU
    assert counters["stats"]["unique_graphs"] == compiled_at_start
