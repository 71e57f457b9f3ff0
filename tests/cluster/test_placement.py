"""Placement planner, serve configs and `montage plan`: pure config, no Ray, no torch."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cluster.placement import (
    CUDA_CONTEXT_GIB,
    GPU,
    H100,
    H200,
    PlanError,
    apply,
    estimate_gib,
    gpu_spec,
    plan,
)
from cluster.plan_cli import app_args, main_plan
from config.app import AppArgs, Batching
from config.composition import CompositionArgs
from config.specs import SPECS

ROOT = Path(__file__).resolve().parents[2]
H200_YAML = ROOT / "config/serve/h200.yaml"
H100_YAML = ROOT / "config/serve/h100.yaml"
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


def pretrained(replicas: dict[str, int] | None = None, **memory_gib: float) -> AppArgs:
    """Every family pretrained in bf16 (FLUX with its own Kontext transformer, nothing offloaded)."""
    replicas = replicas or {}
    return AppArgs.model_validate({
        name: {"args": {**args, "dtype": "bfloat16"},
               "deployment": {"memory_gib": memory_gib.get(name),
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


def without_declared_memory(args: AppArgs) -> AppArgs:
    return args.model_copy(update={name: getattr(args, name).model_copy(update={
        "deployment": getattr(args, name).deployment.model_copy(update={"memory_gib": None})})
        for name in args.families()})


def test_h200_yaml_memory_covers_the_measured_estimates_and_fits_with_headroom():
    args = load(H200_YAML)
    for name, family in args.families().items():
        estimate = estimate_gib(name, family, text_encoder_offload=name == "wan")
        assert estimate <= family.deployment.memory_gib <= estimate + 0.1, name
    assert args.flux.args.kontext_id is None and args.wan.args.text_encoder_offload
    assert plan(without_declared_memory(args), H200).headroom_fraction >= 0.10


def test_h100_yaml_serves_prompts_and_images_with_headroom():
    args = load(H100_YAML)
    assert set(args.families()) == {"llm", "sdxl", "flux", "embedder"}
    for result in (plan(args, H100), plan(without_declared_memory(args), H100)):
        assert result.headroom_fraction >= 0.10 and [load.share <= 1.0 for load in result.loads] == [True]
    assert plan(args, H100).total_gib == pytest.approx(63.0)


def test_estimates_follow_the_measured_footprints_and_the_batch_size():
    args = pretrained()  # default batching: 4 per batch
    wan = SPECS["wan"].footprint
    assert estimate_gib("wan", args.wan) == pytest.approx(
        wan.resident_gib + 4 * wan.per_request_gib + CUDA_CONTEXT_GIB, abs=0.01)
    assert estimate_gib("wan", args.wan) - estimate_gib("wan", args.wan, text_encoder_offload=True) == pytest.approx(
        wan.text_encoder_gib, abs=0.01)
    one = args.sdxl.model_copy(update={"deployment": args.sdxl.deployment.model_copy(
        update={"batching": Batching(max_batch_size=1)})})
    assert estimate_gib("sdxl", args.sdxl) - estimate_gib("sdxl", one) == pytest.approx(
        3 * SPECS["sdxl"].footprint.per_request_gib, abs=0.01)
    shared = args.flux.model_copy(update={"args": args.flux.args.model_copy(update={"kontext_id": None})})
    assert estimate_gib("flux", args.flux) - estimate_gib("flux", shared) == pytest.approx(
        11.9e9 * 2 / 2**30, abs=0.01)  # a separate Kontext transformer: 11.9 B parameters in bf16
    with pytest.raises(ValueError, match="no text encoder"):
        estimate_gib("svd", args.svd, text_encoder_offload=True)


def test_over_committed_plan_is_refused_naming_families_and_numbers():
    args = pretrained(replicas={"wan": 2})
    with pytest.raises(PlanError) as refused:
        plan(args, H200)
    message = str(refused.value)
    wan = estimate_gib("wan", args.wan)
    assert "over-committed" in message and "125.8 GiB usable" in message
    assert f"wan 2 × {wan:.1f} = {2 * wan:.1f} GiB" in message
    for name in ("sdxl", "flux", "svd", "llm", "embedder"):
        assert name in message


def test_wan_text_encoder_offload_is_what_lets_every_family_fit_one_h200():
    args = without_declared_memory(load(H200_YAML))
    on_gpu = args.model_copy(update={"wan": args.wan.model_copy(update={
        "args": args.wan.args.model_copy(update={"text_encoder_offload": False})})})
    with pytest.raises(PlanError, match="over-committed"):
        plan(on_gpu, H200)
    assert plan(on_gpu, H200, text_encoder_offload={"wan"}).headroom_fraction >= 0.10


def test_replica_larger_than_one_gpu_is_refused():
    with pytest.raises(PlanError, match=r"larger than one H100 \(79.3 GiB\): .*wan 90\.0 GiB"):
        plan(pretrained(wan=90), gpu_spec("h100x4"))


def test_tiny_sources_plan_to_nothing():
    args = AppArgs()  # every family tiny except the embedder, whose default is its bundled MiniLM
    result = plan(args.model_copy(update={"embedder": args.embedder.model_copy(update={"enabled": False})}), H200)
    assert len(result.families) == 5 and result.total_gib == 0 and result.headroom_fraction == 1.0
    assert all(f.memory_gib == 0 and f.num_gpus == 0 and f.gpus == [] for f in result.families)


MEASURED = dict(wan=38.4, flux=36.8, sdxl=14.7, svd=28.9, llm=5.3, embedder=1.6)


def test_bin_packing_across_two_gpus_keeps_every_gpu_within_memory():
    gpu = GPU(name="H200", memory_gib=139.8, count=2)
    result = plan(pretrained(replicas={"wan": 2, "sdxl": 2}, **MEASURED), gpu)
    for load in result.loads:
        assert load.memory_gib <= gpu.memory_gib * 0.9 and load.share <= 1.0
    placed = {f.name: f.gpus for f in result.families}
    assert len(placed["wan"]) == len(placed["sdxl"]) == 2 and {i for f in result.families for i in f.gpus} == {0, 1}
    assert result.total_gib == pytest.approx(sum(load.memory_gib for load in result.loads))


def test_packing_refuses_when_replicas_do_not_fit_per_gpu():
    # 3 × 70 GiB fits the total of two GPUs (251.6 GiB) but not two per GPU (≤ 125.8 GiB each)
    with pytest.raises(PlanError, match="cannot place a wan replica"):
        plan({"wan": pretrained(replicas={"wan": 3}, wan=70).wan}, GPU(name="H200", memory_gib=139.8, count=2))


def test_apply_writes_planned_fractions_back():
    args = pretrained(**{**MEASURED, "wan": 51.9, "flux": 71.6})
    result = plan(args, GPU(name="H200", memory_gib=139.8, count=2))
    applied = apply(result, args)
    for family in result.families:
        assert getattr(applied, family.name).deployment.num_gpus == family.num_gpus > 0
        assert getattr(args, family.name).deployment.num_gpus == 0
    assert applied.wan.deployment.num_gpus == 0.38 and applied.flux.deployment.num_gpus == 0.52


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


def test_every_pod_of_the_rayservice_reaches_redis_and_the_asset_store():
    """As written, each pod takes REDIS_URL and the object store's Secret; the RWX alternative is a real claim."""
    cluster = yaml.safe_load(RAYSERVICE_YAML.read_text())["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for pod in pods:
        (container,) = pod["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "montage-assets"}} in container["envFrom"], container["name"]
        redis_url = next(e for e in container["env"] if e["name"] == "REDIS_URL")
        assert redis_url["valueFrom"]["secretKeyRef"] == {"name": "montage-redis", "key": "url"}
    secret = yaml.safe_load((RAYSERVICE_YAML.parent / "assets-object-store.yaml").read_text())
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "montage-assets"
    assert CompositionArgs(asset_url=secret["stringData"]["MONTAGE_ASSET_URL"]).asset_url
    claim = yaml.safe_load((RAYSERVICE_YAML.parent / "assets-rwx.yaml").read_text())
    assert claim["metadata"]["name"] == "montage-assets" and claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_gpu_spec_parses_counts():
    assert gpu_spec("h200") == H200 and gpu_spec("H200x8").count == 8
    with pytest.raises(ValueError, match="unknown GPU"):
        gpu_spec("tpu")


def test_main_plan_prints_the_table(capsys):
    assert main_plan(str(H200_YAML)) == 0
    out = capsys.readouterr().out
    assert "family" in out and "GiB/replica" in out and "GPU share" in out
    assert "wan       pretrained  1         38.40        0.28       0" in out
    assert "headroom 14.1 GiB (10.1%, required 10%)" in out


def test_main_plan_refuses_with_code_2(tmp_path, capsys):
    config = yaml.safe_load(H200_YAML.read_text())
    config["applications"][0]["args"]["wan"]["deployment"]["autoscaling"]["max_replicas"] = 2
    path = tmp_path / "two_wan.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main_plan(str(path)) == 2
    assert "over-committed" in capsys.readouterr().out
    assert main_plan(str(tmp_path / "missing.yaml")) == 2
