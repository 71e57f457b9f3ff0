"""The ingress and the task runner run no model: importing them loads none of a model's libraries, so their
replicas pay neither torch's import time nor its memory. A model replica loads its own family's libraries only: a
diffusion replica no LLM decode engine (llguidance, which brings torch's inductor: ~1.8 s of each replica's start on
this machine), the LLM's and the Embedder's no diffusers (cheap beside torch and transformers, which they load
anyway: 0.2 CPU s and 5 MiB here; the boundary is what counts)."""
import pytest
from helpers import imported_by

MODEL_LIBRARIES = {"torch", "safetensors", "diffusers", "transformers", "peft", "accelerate"}


@pytest.mark.parametrize("module", ["composition.app", "composition.runner"])
def test_ingress_and_runner_import_no_model_library(module):
    loaded = imported_by(module)
    assert {"composition", "ray"} <= loaded
    assert not loaded & MODEL_LIBRARIES


def test_a_model_replica_loads_only_its_own_familys_libraries():
    diffusion = imported_by("deployments.families, models.sdxl, models.flux, models.svd, models.wan")
    assert "diffusers" in diffusion and "llguidance" not in diffusion
    llm_and_embedder = imported_by("deployments.llm, models.llm, deployments.families, models.embedder")
    assert "llguidance" in llm_and_embedder and "diffusers" not in llm_and_embedder
