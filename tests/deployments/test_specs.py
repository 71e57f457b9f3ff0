"""The family registry and what derives from it; family deployments built in-process (no Ray cluster)."""
from __future__ import annotations

import asyncio
import inspect

import pytest

from config.app import AppArgs, FamilyDeployment
from config.families import SVDArgs, WanArgs
from config.specs import SPECS, families_with, spec_for
from deployments.base import Job
from deployments.builder import SingleFamilyArgs
from deployments.families import SVDDeployment, WanDeployment
from helpers import png
from models.errors import InvalidRequest
from models.types import VideoRequest


@pytest.mark.parametrize("key", SPECS)
def test_a_spec_names_its_classes_and_each_operation_is_a_deployment_method(key):
    spec = SPECS[key]
    assert spec.key == key and spec.model_class.name == key
    assert spec_for(spec.args()) is spec
    deployment = spec.deployment_class
    assert all(inspect.iscoroutinefunction(getattr(deployment, operation)) for operation in spec.operations)
    assert deployment.batch_methods()


def test_app_args_have_one_field_per_spec_in_registry_order():
    args = AppArgs()
    assert list(AppArgs.model_fields)[:len(SPECS)] == list(SPECS) == list(args.families())
    assert all(isinstance(getattr(args, key).args, spec.args) for key, spec in SPECS.items())
    assert families_with("generate") == ("sdxl", "flux") and families_with("animate") == ("svd", "wan")
    assert len({spec.deployment_name for spec in SPECS.values()}) == len({spec.args for spec in SPECS.values()}) == 6


def test_a_single_family_app_takes_that_familys_own_args():
    single = SingleFamilyArgs.model_validate({"family": "wan", "deployment": {"args": {"vae_tiling": True}}})
    assert isinstance(single.deployment, FamilyDeployment) and single.deployment.args.vae_tiling
    with pytest.raises(ValueError, match="vae_tiling"):
        SingleFamilyArgs.model_validate({"family": "svd", "deployment": {"args": {"vae_tiling": True}}})


def test_svd_and_wan_replicas_build_their_own_model_and_have_their_own_batch_queues():
    svd, wan = SVDDeployment(SVDArgs()), WanDeployment(WanArgs())
    assert (svd.model.name, wan.model.name) == ("svd", "wan") and wan.progress and wan.replica
    assert SVDDeployment._animate is not WanDeployment._animate  # a Serve batch queue belongs to its function
    video = dict(image=png(), width=64, height=64, steps=1, guidance=1.0, fps=8, seed=0)

    async def both():  # the grouped execution behind the queues (they need a Serve replica context)
        return await asyncio.gather(*(replica.execute([Job(VideoRequest(num_frames=frames, **video))], "animate",
                                                      "animating")
                                      for replica, frames in ((svd, 4), (wan, 5))))

    clips = [clip for (clip,) in asyncio.run(both())]
    assert [(c.metadata.model, c.num_frames) for c in clips] == [("svd", 4), ("wan", 5)]
    assert wan.info()["frame_multiple"] == 4 and svd.info()["frame_multiple"] == 1
    with pytest.raises(InvalidRequest, match="num_frames"):
        wan.model.validate(VideoRequest(num_frames=4, **video))
    with pytest.raises(InvalidRequest, match="width: must be a multiple of"):
        svd.model.validate(VideoRequest(num_frames=4, **{**video, "width": 72}))
