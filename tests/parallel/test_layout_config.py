"""`parallel` layouts in a family's args: degree-1 default, bad layouts refused at load naming the field."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from cluster.placement import PlanError, gpu_spec, plan
from config.app import AppArgs
from config.families import FluxArgs, Source, WanArgs
from models.flux import ARCHITECTURES as FLUX_ARCHITECTURES
from models.wan import ARCHITECTURES as WAN_ARCHITECTURES


def test_the_default_layout_is_one_rank():
    for args in (FluxArgs(), WanArgs()):
        assert args.parallel.degree == 1 and args.parallel.placement == "STRICT_PACK"


def test_degree_is_the_product_of_the_three():
    layout = WanArgs(source="random", parallel={"ulysses": 4, "cfg": 2}).parallel
    assert (layout.degree, layout.context) == (8, 4)


@pytest.mark.parametrize("args, field", [
    (dict(parallel={"ulysses": 0}), "parallel.ulysses"),
    (dict(parallel={"cfg": 3}), "parallel.cfg"),
    (dict(parallel={"ranks": 2}), "parallel.ranks"),
    (dict(parallel={"placement": "SPREAD"}), "parallel.placement"),
])
def test_malformed_layouts_name_their_field(args, field):
    with pytest.raises(ValidationError) as error:
        WanArgs(**args)
    assert field in str(error.value)


@pytest.mark.parametrize("family, args, message", [
    (FluxArgs, dict(parallel={"cfg": 2}), "parallel.cfg"),
    (FluxArgs, dict(parallel={"ulysses": 2}, adapters={"max_per_request": 1}), "a gang serves none"),
    (FluxArgs, dict(parallel={"ulysses": 4}), "parallel.ulysses: 4 does not divide flux's 2 attention heads"),
    (WanArgs, dict(source="random", parallel={"ulysses": 3}), "parallel.ulysses: 3 does not divide wan's 40"),
    (FluxArgs, dict(source="random", max_sequence_length=100, parallel={"ulysses": 8}), "100 text tokens"),
    (WanArgs, dict(device="cpu", parallel={"ring": 2}), "parallel.ring"),
])
def test_layouts_the_model_cannot_split_are_refused(family, args, message):
    with pytest.raises(ValidationError) as error:
        family(**args)
    assert message in str(error.value)


def test_a_bad_layout_is_refused_at_serve_config_load_naming_family_and_field():
    with pytest.raises(ValidationError) as error:
        AppArgs.model_validate({"wan": {"args": {"parallel": {"ulysses": 4}}}})
    text = str(error.value)
    assert "wan" in text and "parallel.ulysses" in text


def test_the_config_knows_the_models_head_counts():
    for args, architectures in ((FluxArgs, FLUX_ARCHITECTURES), (WanArgs, WAN_ARCHITECTURES)):
        for source in (Source.TINY, Source.RANDOM):
            assert args.attention_heads[source] == architectures[source]["transformer"]["num_attention_heads"]


def gang(parallel: dict, **deployment) -> dict:
    return {"args": {"source": "random", "parallel": parallel},
            "deployment": {"memory_gib": 70.0, **deployment}}


@pytest.mark.parametrize("num_gpus", [0.5, 2])
def test_a_gang_takes_whole_gpus_per_rank(num_gpus):
    with pytest.raises(ValidationError) as error:
        AppArgs.model_validate({"wan": gang({"ulysses": 4, "cfg": 2}, num_gpus=num_gpus)})
    assert "deployment.num_gpus" in str(error.value)


def test_a_gang_replica_asks_serve_for_a_bundle_per_rank():
    args = AppArgs.model_validate({"wan": gang({"ulysses": 4, "cfg": 2}, num_gpus=1, num_cpus=2,
                                               resources={"gpu_node": 0.01}),
                                   "flux": {"args": {"parallel": {"ulysses": 2, "placement": "PACK"}, "device": "cpu",
                                                     "adapters": {"max_per_request": 0}}}})
    options = args.wan.ray_options()
    assert options["placement_group_bundles"] == [{"CPU": 2.0, "GPU": 1.0, "gpu_node": 0.01}] * 8
    assert options["placement_group_strategy"] == "STRICT_PACK"
    flux = args.flux.ray_options()
    assert flux["placement_group_bundles"] == [{"CPU": 1.0}] * 2 and flux["placement_group_strategy"] == "PACK"
    assert "placement_group_bundles" not in args.sdxl.ray_options()  # degree 1: a replica as before


def test_the_planner_places_each_rank_of_a_gang_on_a_whole_gpu():
    others = {name: {"enabled": False, "args": {}} for name in ("llm", "sdxl", "flux", "svd", "embedder")}
    args = AppArgs.model_validate(others | {"wan": gang({"ulysses": 4, "cfg": 2}, num_gpus=1)})
    result = plan(args, gpu_spec("h200x8"))
    [wan] = result.families
    assert (wan.ranks, wan.num_gpus, sorted(wan.gpus)) == (8, 1.0, list(range(8)))
    assert all(load.share == 1.0 for load in result.loads)
    with pytest.raises(PlanError):  # 8 ranks do not fit 4 GPUs
        plan(args, gpu_spec("h200x4"))
