"""LoRA adapters on the tiny SDXL UNet and FLUX transformer: files made with peft, checked against the model, loaded
into the live pipelines per call, unloaded when released; two calls with different adapters interleave their steps
under the step scheduler and each gets its own image."""
import threading

import numpy as np
import pytest
from helpers import pixels
from loras import save_lora

from config.families import AdapterPolicy, FluxArgs, SDXLArgs
from deployments.scheduler import StepScheduler
from models.errors import InvalidRequest
from models.flux import Flux
from models.sdxl import SDXL
from models.steps import Steps
from models.types import ImageRequest, Lora


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Adapter folders of both families, filled from throwaway models of the same (tiny) architectures."""
    root = tmp_path_factory.mktemp("adapters")
    sdxl_unet = SDXL(SDXLArgs(adapters=AdapterPolicy(folder=root / "scratch", demo=False))).union.unet
    flux_transformer = Flux(FluxArgs(adapters=AdapterPolicy(folder=root / "scratch", demo=False))).text_to_image.transformer
    (root / "sdxl").mkdir()
    (root / "flux").mkdir()
    for seed, name in enumerate(("ink", "neon", "clay")):
        save_lora(root / "sdxl" / f"{name}.safetensors", sdxl_unet, "unet", seed)
    save_lora(root / "sdxl" / "wide.safetensors", sdxl_unet, "unet", 7, rank=16)
    save_lora(root / "sdxl" / "other-base.safetensors", flux_transformer, "unet", 8)  # FLUX modules under unet.
    save_lora(root / "flux" / "ink.safetensors", flux_transformer, "transformer", 9)
    (root / "sdxl" / "broken.safetensors").write_bytes(b"not a safetensors file")
    return root


@pytest.fixture(scope="module")
def model(folders):
    policy = AdapterPolicy(folder=folders / "sdxl", max_rank=8, max_loaded=1, max_per_request=2, demo=False)
    return SDXL(SDXLArgs(adapters=policy))


def request(seed: int = 3, *loras: Lora, **change) -> ImageRequest:
    fields = dict(prompt="a lighthouse in fog", width=64, height=64, steps=3, guidance=5.0, seed=seed, loras=loras)
    return ImageRequest(**{**fields, **change})


def test_the_catalogue_checks_each_file_against_the_model(model):
    catalogue = model.adapters.catalogue()
    assert sorted(catalogue)[:6] == ["broken", "clay", "ink", "neon", "other-base", "wide"]
    assert (catalogue["ink"].rank, catalogue["ink"].error, catalogue["ink"].source) == (4, None, "file")
    assert catalogue["wide"].error == "rank 16 is over the limit of 8"
    assert "another base model" in catalogue["other-base"].error
    assert catalogue["broken"].error.startswith("not a LoRA file")


def test_an_adapter_changes_the_image_scale_zero_does_not_and_repeats_are_identical(model):
    base = model.run([request()])
    inked = model.run([request(3, Lora(id="ink"))])
    assert np.abs(inked - base).mean() > 1e-3
    assert np.array_equal(model.run([request(3, Lora(id="ink", scale=0.0))]), base)
    assert np.array_equal(model.run([request(3, Lora(id="ink"))]), inked)
    half = model.run([request(3, Lora(id="ink", scale=0.5))])
    assert 0 < np.abs(half - base).mean() < np.abs(inked - base).mean()
    assert np.array_equal(model.run([request()]), base)  # adapters off again for a call without them


def test_a_batch_with_adapters_equals_single_calls_and_mixed_batches_split(model):
    mixed = [request(1, Lora(id="ink")), request(2), request(3, Lora(id="ink")), request(4, Lora(id="neon"))]
    results = model.generate(mixed)
    singles = [model.generate([r])[0] for r in mixed]
    assert [r.metadata.batch_size for r in results] == [2, 1, 2, 1]
    assert [r.metadata.extra["loras"] for r in results][3] == [{"id": "neon", "scale": 1.0}]
    for batched, single in zip(results, singles, strict=True):  # batching moves float sums by rounding only
        assert np.abs(pixels(batched.png) - pixels(single.png)).max() <= 1


def test_released_adapters_unload_and_the_bank_stays_within_its_capacity(model):
    bank = model.adapters  # capacity: max_loaded 1 × max_per_request 2
    model.run([request(3, Lora(id="ink"), Lora(id="neon"))])
    before = bank.counts.copy()
    model.run([request(3, Lora(id="clay"))])  # over capacity: the least recently used idle adapter goes
    assert len(bank.loaded) == 2 and "clay" in bank.loaded
    assert bank.counts["evictions"] - before["evictions"] == 1
    bank.release(["clay"])
    model.run([request(3, Lora(id="ink"))])
    assert "clay" not in bank.loaded


def test_unknown_and_incompatible_adapters_name_their_field(model):
    with pytest.raises(InvalidRequest) as unknown:
        model.run([request(3, Lora(id="ink"), Lora(id="missing"))])
    assert unknown.value.field == "loras.1.id"
    with pytest.raises(InvalidRequest) as foreign:
        model.run([request(3, Lora(id="other-base"))])
    assert foreign.value.field == "loras.0.id"
    assert np.array_equal(model.run([request()]), model.run([request()]))  # the model is intact


def test_a_replaced_file_is_loaded_again_and_any_file_name_that_is_an_id_loads(model, folders):
    """Weights are copied out of the file (a file replaced under a loaded adapter changes nothing until it is
    loaded again, at its next use); ids that read as module attributes or hold dots load like any other."""
    source = (folders / "sdxl" / "ink.safetensors").read_bytes()
    for name in ("double", "my.lora"):
        (folders / "sdxl" / f"{name}.safetensors").write_bytes(source)
    inked = model.run([request(3, Lora(id="ink"))])
    assert np.array_equal(model.run([request(3, Lora(id="double"))]), inked)
    assert np.array_equal(model.run([request(3, Lora(id="my.lora"))]), inked)
    digest = model.adapters.catalogue()["my.lora"].digest
    (folders / "sdxl" / "my.lora.safetensors").write_bytes((folders / "sdxl" / "neon.safetensors").read_bytes())
    assert model.adapters.catalogue()["my.lora"].digest != digest
    assert np.array_equal(model.run([request(3, Lora(id="my.lora"))]), model.run([request(3, Lora(id="neon"))]))
    (folders / "sdxl" / "Not An Id.safetensors").write_bytes(source)
    assert model.adapters.catalogue()["Not An Id"].error.startswith("the file's name is no adapter id")


def test_uploaded_bytes_are_checked_as_files_are_load_by_digest_and_go_when_dropped(model, folders):
    data = (folders / "sdxl" / "ink.safetensors").read_bytes()
    entry = model.adapters.check("sea-ink", data)
    assert (entry.source, entry.rank, entry.error) == ("upload", 4, None)
    assert entry.digest == model.adapters.catalogue()["ink"].digest
    assert model.adapters.check("sea-wide", (folders / "sdxl" / "wide.safetensors").read_bytes()).error == \
        "rank 16 is over the limit of 8"
    assert model.adapters.check("Bad", data).error.startswith("the file's name is no adapter id")
    with pytest.raises(InvalidRequest, match="unknown adapter 'sea-ink'"):
        model.run([request(3, Lora(id="sea-ink"))])
    model.adapters.take_upload("sea-ink", entry.digest, data)
    assert np.array_equal(model.run([request(3, Lora(id="sea-ink"))]), model.run([request(3, Lora(id="ink"))]))
    model.adapters.take_upload("sea-ink", "another", (folders / "sdxl" / "neon.safetensors").read_bytes())
    assert np.array_equal(model.run([request(3, Lora(id="sea-ink"))]), model.run([request(3, Lora(id="neon"))]))
    model.adapters.drop_uploads(["sea-ink"])
    with pytest.raises(InvalidRequest) as unknown:
        model.run([request(3, Lora(id="sea-ink"))])
    assert unknown.value.field == "loras.0.id" and "sea-ink" not in model.adapters.catalogue()


def test_calls_with_different_adapters_interleave_their_steps_and_keep_their_images(model):
    """Each call holds the device between two step boundaries and hands it over at every boundary (turn 0): the
    adapters each call needs are active whenever its steps run."""
    scheduler = StepScheduler(turn_s=0.0)
    order: list[str] = []
    outputs: dict[str, np.ndarray] = {}

    def call(name: str) -> None:
        ticket = scheduler.ticket("normal", name or "plain")

        def on_step(boundary) -> None:
            order.append(name)
            scheduler.boundary(ticket)

        with scheduler.running(ticket):
            outputs[name] = model.run([request(5, *([Lora(id=name)] if name else []), steps=6)], Steps(on_step))

    solo = {name: model.run([request(5, *([Lora(id=name)] if name else []), steps=6)]) for name in ("ink", "neon", "")}
    threads = [threading.Thread(target=call, args=(name,)) for name in solo]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(set(order[:6])) == 3  # the calls did interleave
    for name, image in solo.items():
        assert np.array_equal(outputs[name], image), name


def test_flux_takes_its_own_adapters_for_text_to_image(folders):
    flux = Flux(FluxArgs(adapters=AdapterPolicy(folder=folders / "flux", demo=False)))
    assert flux.adapters.catalogue()["ink"].error is None
    base = flux.run([request(guidance=3.5)])
    inked = flux.run([request(3, Lora(id="ink"), guidance=3.5)])
    assert np.abs(inked - base).mean() > 1e-4
    assert np.array_equal(flux.run([request(3, Lora(id="ink", scale=0.0), guidance=3.5)]), base)
