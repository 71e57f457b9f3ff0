"""Placement planner, serve configs and `montage plan`: pure config, no Ray, no torch."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cluster.placement import FOOTPRINTS, GPU, H200, PlanError, apply, estimate_gb, gpu_spec, plan
from cluster.plan_cli import app_args, main_plan
from config.app import AppArgs

ROOT = Path(__file__).resolve().parents[2]
H200_YAML = ROOT / "config/serve/h200.yaml"
CLUSTER_YAML = ROOT / "config/serve/cluster.yaml"
RAYSERVICE_YAML = ROOT / "cluster/kuberay/rayservice.yaml"

PRETRAINED = {
    "llm": {"source": "pretrained", "model_id": "Qwen/Qwen2.5-1.5B-Instruct"},
    "sdxl": {"source": "pretrained", "model_id": "stabilityai/stable-diffusion-xl-base-1.0",
             "controlnet_id": "xinsir/controlnet-union-sdxl-1.0"},
    "flux": {"source": "pretrained", "model_id": "black-forest-labs/FLUX.1-dev",
             "kontext_id": "black-forest-labs/FLUX.1-Kontext-dev"},
    "svd": {"source": "pretrained", "model_id": "stabilityai/stable-video-diffusion-img2vid-xt"},
    "wan": {"source": "pretrained", "model_id": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"},
    "embedder": {"source": "pretrained"},
}


def load(path: Path) -> AppArgs:
    return app_args(yaml.safe_load(path.read_text()))


def pretrained(replicas: dict[str, int] | None = None, **memory_gb: float) -> AppArgs:
    """Every family pretrained in bf16 (FLUX with its own Kontext transformer, nothing offloaded)."""
    replicas = replicas or {}
    return AppArgs.model_validate({
        name: {"args": {**args, "dtype": "bfloat16"},
               "deployment": {"memory_gb": memory_gb.get(name),
                              "autoscaling": {"max_replicas": replicas.get(name, 1)}}}
        for name, args in PRETRAINED.items()
    })


def test_h200_yaml_is_accepted_with_headroom_and_its_fractions_cover_the_plan():
    args = load(H200_YAML)
    result = plan(args, H200)
    assert result.headroom_fraction >= 0.10
    assert sum(load.share for load in result.loads) <= 1.0
    for family in result.families:
        assert family.declared and family.gpus == [0]
        assert getattr(args, family.name).deployment.num_gpus >= family.num_gpus, family.name


def test_h200_yaml_memory_covers_the_estimates_with_wan_text_encoder_offloaded():
    args = load(H200_YAML)
    for name, family in args.families().items():
        estimate = estimate_gb(name, family.args, text_encoder_offload=name == "wan")
        assert family.deployment.memory_gb >= estimate, name
    assert args.flux.args.kontext_id is None
    estimated = plan(args.model_copy(update={name: getattr(args, name).model_copy(update={
        "deployment": getattr(args, name).deployment.model_copy(update={"memory_gb": None})})
        for name in args.families()}), H200, text_encoder_offload={"wan"})
    assert estimated.headroom_fraction >= 0.10


def test_estimates_follow_published_parameter_counts():
    args = pretrained()
    wan = estimate_gb("wan", args.wan.args)
    assert wan == pytest.approx(22.84 * 2 + FOOTPRINTS["wan"].activation_gb + 0.5)
    assert wan - estimate_gb("wan", args.wan.args, text_encoder_offload=True) == pytest.approx(5.68 * 2)
    shared = args.flux.args.model_copy(update={"kontext_id": None})
    assert estimate_gb("flux", args.flux.args) - estimate_gb("flux", shared) == pytest.approx(11.9 * 2)
    with pytest.raises(ValueError, match="no text encoder"):
        estimate_gb("svd", args.svd.args, text_encoder_offload=True)


def test_over_committed_plan_is_refused_naming_families_and_numbers():
    with pytest.raises(PlanError) as refused:
        plan(pretrained(replicas={"wan": 2}), H200)
    message = str(refused.value)
    assert "over-committed" in message and "126.9 GB usable" in message
    assert "wan 2 × 54.2 = 108.4 GB" in message
    assert "flux 1 × 66.0 = 66.0 GB" in message
    for name in ("sdxl", "svd", "llm", "embedder"):
        assert name in message


def test_without_offload_all_families_do_not_fit_one_h200():
    args = pretrained()
    shared = args.model_copy(update={"flux": args.flux.model_copy(update={
        "args": args.flux.args.model_copy(update={"kontext_id": None})})})
    with pytest.raises(PlanError, match="over-committed"):
        plan(shared, H200)
    assert plan(shared, H200, text_encoder_offload={"wan"}).headroom_fraction >= 0.10


def test_replica_larger_than_one_gpu_is_refused():
    with pytest.raises(PlanError, match=r"larger than one H100 \(80 GB\): wan 90\.0 GB"):
        plan(pretrained(wan=90), gpu_spec("h100x4"))


def test_tiny_sources_plan_to_nothing():
    args = AppArgs()  # every family tiny except the embedder, whose default is its bundled MiniLM
    result = plan(args.model_copy(update={"embedder": args.embedder.model_copy(update={"enabled": False})}), H200)
    assert len(result.families) == 5 and result.total_gb == 0 and result.headroom_fraction == 1.0
    assert all(f.memory_gb == 0 and f.num_gpus == 0 and f.gpus == [] for f in result.families)


def test_bin_packing_across_two_gpus_keeps_every_gpu_within_memory():
    gpu = GPU(name="H200", memory_gb=141, count=2)
    result = plan(pretrained(replicas={"wan": 2, "sdxl": 2}), gpu)
    for load in result.loads:
        assert load.memory_gb <= gpu.memory_gb * 0.9 and load.share <= 1.0
    placed = {f.name: f.gpus for f in result.families}
    assert sorted(placed["wan"]) == [0, 1] and len(placed["sdxl"]) == 2
    assert result.total_gb == pytest.approx(sum(load.memory_gb for load in result.loads))


def test_packing_refuses_when_replicas_do_not_fit_per_gpu():
    # 3 × 70 GB fits the total of two GPUs (253.8 GB) but not two per GPU (≤ 126.9 GB each)
    with pytest.raises(PlanError, match="cannot place a wan replica"):
        plan({"wan": pretrained(replicas={"wan": 3}, wan=70).wan}, GPU(name="H200", memory_gb=141, count=2))


def test_apply_writes_planned_fractions_back():
    args = pretrained()
    result = plan(args, GPU(name="H200", memory_gb=141, count=2))
    applied = apply(result, args)
    for family in result.families:
        assert getattr(applied, family.name).deployment.num_gpus == family.num_gpus > 0
        assert getattr(args, family.name).deployment.num_gpus == 0
    assert applied.wan.deployment.num_gpus == 0.39 and applied.flux.deployment.num_gpus == 0.47


def test_cluster_and_kuberay_configs_validate_and_agree():
    cluster = load(CLUSTER_YAML)
    service = yaml.safe_load(RAYSERVICE_YAML.read_text())
    assert service["kind"] == "RayService"
    assert app_args(yaml.safe_load(service["spec"]["serveConfigV2"])) == cluster
    assert cluster.redis_url is None
    for name, family in cluster.families().items():
        assert family.deployment.resources == {"gpu_node": 0.01}, name
    result = plan(cluster, gpu_spec("h200x8"))
    for family in result.families:
        assert getattr(cluster, family.name).deployment.num_gpus >= family.num_gpus


def test_gpu_spec_parses_counts():
    assert gpu_spec("h200") == H200 and gpu_spec("H200x8").count == 8
    with pytest.raises(ValueError, match="unknown GPU"):
        gpu_spec("tpu")


def test_main_plan_prints_the_table(capsys):
    assert main_plan(str(H200_YAML)) == 0
    out = capsys.readouterr().out
    assert "family" in out and "GB/replica" in out and "GPU share" in out
    assert "wan       pretrained  1         43.00       0.31       0" in out
    assert "headroom 16.0 GB (11.3%, required 10%)" in out


def test_main_plan_refuses_with_code_2(tmp_path, capsys):
    config = yaml.safe_load(H200_YAML.read_text())
    config["applications"][0]["args"]["wan"]["deployment"]["autoscaling"]["max_replicas"] = 2
    path = tmp_path / "two_wan.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main_plan(str(path)) == 2
    assert "over-committed" in capsys.readouterr().out
    assert main_plan(str(tmp_path / "missing.yaml")) == 2
