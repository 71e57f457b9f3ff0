"""The ingress and the task runner run no model: importing them loads none of a model's libraries, so their
replicas pay neither torch's import time nor its memory."""
import pytest
from helpers import imported_by

MODEL_LIBRARIES = {"torch", "safetensors", "diffusers", "transformers", "peft", "accelerate"}


@pytest.mark.parametrize("module", ["composition.app", "composition.runner"])
def test_ingress_and_runner_import_no_model_library(module):
    loaded = imported_by(module)
    assert {"composition", "ray"} <= loaded
    assert not loaded & MODEL_LIBRARIES
