"""The ingress and the task runner run no model: importing them loads none of a model's libraries, so their
replicas pay neither torch's import time nor its memory. Nor does a diffusion replica load the LLM's decode engine
(llguidance, which brings torch's inductor): ~1.8 s of each replica's start on this machine."""
import pytest
from helpers import imported_by

MODEL_LIBRARIES = {"torch", "safetensors", "diffusers", "transformers", "peft", "accelerate"}


@pytest.mark.parametrize("module", ["composition.app", "composition.runner"])
def test_ingress_and_runner_import_no_model_library(module):
    loaded = imported_by(module)
    assert {"composition", "ray"} <= loaded
    assert not loaded & MODEL_LIBRARIES


def test_a_diffusion_replica_loads_no_llm_decode_engine():
    loaded = imported_by("deployments.families")
    assert "diffusers" in loaded and "llguidance" not in loaded
    assert "llguidance" in imported_by("deployments.llm")
