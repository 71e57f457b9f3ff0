"""Single-file checkpoints: a tiny pipeline saved as one .safetensors file loads through diffusers' single-file path,
offline, with its configs from a local folder, and renders the images of the folder it came from."""
import shutil

import huggingface_hub.constants
import numpy as np
import pytest
from safetensors.torch import save_file

from config.families import FluxArgs, SDXLArgs, SVDArgs
from helpers import png
from models import flux, sdxl
from models.types import Control, EditRequest, ImageRequest
from original_format import sdxl_checkpoint


@pytest.fixture(scope="module")
def sdxl_files(tmp_path_factory):
    """The tiny SDXL as a diffusers folder, its ControlNet alone, one SGM-format file and, as the hub's SDXL base
    without its weights, the configs and tokenizers of a plain StableDiffusionXLPipeline."""
    root = tmp_path_factory.mktemp("sdxl")
    model = sdxl.SDXL(SDXLArgs())
    model.union.save_pretrained(root / "folder")
    model.union.controlnet.save_pretrained(root / "controlnet")
    model.plain.save_pretrained(root / "plain")
    shutil.copytree(root / "plain", root / "config", ignore=shutil.ignore_patterns("*.safetensors"))
    save_file(sdxl_checkpoint(model.union), root / "sdxl.safetensors")
    return root


def sdxl_args(root, **change) -> SDXLArgs:
    return SDXLArgs(**{**dict(source="pretrained", model_id=str(root / "sdxl.safetensors"),
                              config_folder=str(root / "config"), controlnet_id=str(root / "controlnet")), **change})


def image(seed: int, **change) -> ImageRequest:
    return ImageRequest(**{**dict(prompt=f"a lighthouse {seed}", width=64, height=64, steps=2, guidance=5.0,
                                  seed=seed), **change})


def test_sdxl_checkpoint_file_renders_the_folders_images_offline(sdxl_files):
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # any hub call would raise
    assert not list((sdxl_files / "config").rglob("*.safetensors"))  # every weight comes from the one file
    folder = sdxl.SDXL(SDXLArgs(source="pretrained", model_id=str(sdxl_files / "folder"),
                                controlnet_id=str(sdxl_files / "controlnet")))
    single = sdxl.SDXL(sdxl_args(sdxl_files))
    canny = (Control(type="canny", image=png(64, 64, seed=3)),)
    plain = [image(1), image(2)]
    assert np.array_equal(single.run(plain), folder.run(plain))
    # With a control the two differ by a few float32 ulps (at most 1.2e-6 seen; one pixel level is 3.9e-3) though every
    # weight is equal; the cause is not traced.
    controlled = [image(4, controls=canny)]
    expected = folder.run(controlled)
    np.testing.assert_allclose(single.run(controlled), expected, rtol=0, atol=1e-5)
    assert np.abs(expected[0] - folder.run([image(5, controls=canny)])[0]).mean() > 1e-3  # seeds do change it


def test_a_missing_checkpoint_file_is_named(sdxl_files):
    with pytest.raises(ValueError, match="model_id: no checkpoint file at .*missing.safetensors"):
        sdxl.SDXL(sdxl_args(sdxl_files, model_id=str(sdxl_files / "missing.safetensors")))
    with pytest.raises(ValueError, match="config_folder: .* holds no model_index.json"):
        sdxl.SDXL(sdxl_args(sdxl_files, config_folder=str(sdxl_files / "controlnet")))


def test_a_checkpoint_file_needs_its_config_folder_and_a_family_that_reads_one():
    with pytest.raises(ValueError, match="config_folder is required when model_id is a .safetensors file"):
        SDXLArgs(source="pretrained", model_id="sdxl.safetensors", controlnet_id="union")
    with pytest.raises(ValueError, match="config_folder is used only with a .safetensors checkpoint file"):
        SDXLArgs(source="pretrained", model_id="some/folder", config_folder="configs", controlnet_id="union")
    with pytest.raises(ValueError, match="model_id: SVDArgs loads a hub id or a diffusers folder"):
        SVDArgs(source="pretrained", model_id="svd.safetensors", config_folder="configs")
    with pytest.raises(ValueError, match="config_folder is required when kontext_id is a .safetensors file"):
        FluxArgs(source="pretrained", model_id="some/folder", kontext_id="kontext.safetensors")


def test_flux_transformer_files_render_the_folders_images(tmp_path):
    """FLUX files hold the transformer alone; the encoders and VAE load from config_folder. diffusers' converter of
    BFL's layout is fixed to the full-size width (3072), so the tiny transformer is saved in diffusers' layout."""
    flux.Flux(FluxArgs()).text_to_image.save_pretrained(tmp_path / "folder")
    weights = tmp_path / "folder" / "transformer" / "diffusion_pytorch_model.safetensors"
    shutil.copy(weights, tmp_path / "flux.safetensors")
    shutil.copytree(tmp_path / "folder", tmp_path / "config")
    (tmp_path / "config" / weights.relative_to(tmp_path / "folder")).unlink()  # the transformer comes from the file
    file = str(tmp_path / "flux.safetensors")
    folder = flux.Flux(FluxArgs(source="pretrained", model_id=str(tmp_path / "folder")))
    single = flux.Flux(FluxArgs(source="pretrained", model_id=file, kontext_id=file,
                                config_folder=str(tmp_path / "config")))
    assert single.kontext.transformer is not single.text_to_image.transformer  # kontext_id loaded its own
    generation = [ImageRequest(prompt="a kite", width=64, height=64, steps=2, guidance=3.5, seed=7)]
    edit = [EditRequest(prompt="add snow", image=png(64, 64, seed=1), width=64, height=64, steps=2, guidance=3.5,
                        seed=7)]
    assert np.array_equal(single.run(generation), folder.run(generation))
    assert np.array_equal(single.run_edit(edit), folder.run_edit(edit))
