"""Real multi-node placement: on a local Ray cluster (CPU-only head, a "GPU node" with virtual GPUs, a
CPU-only worker), the
SDXL replicas land only on the node that has their GPUs and `gpu_node` label, reserve them there, and
serve real requests; the Embedder needs no GPU; a deployment asking for more than any node has stays
unplaced.

Assets across nodes (`multinode_assets.py`): the montage app's ingress on the head node serves what its task runner
wrote on the CPU node only when both reach one store: every node has its own asset folder, so with nothing set the
download is a 404; a folder that all nodes share (`asset_dir`), or an object store (`asset_url`; here moto's S3
emulator, a local server speaking the S3 protocol, not AWS) with no shared folder at all, serves the very bytes.

The cluster runs in a subprocess (`multinode_app.py`), so it never meets the session's own Ray instance."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("multinode_app.py")
ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n".hex()
RUN_TIMEOUT_S = 420
pytestmark = pytest.mark.xdist_group("multinode")  # a long unit of its own: a parallel run sends it early (lanes.py)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # no address/namespace leaks in
    env.update(RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONUNBUFFERED="1")
    return env


def _processes_of(session_name: str) -> list[str]:
    """Live processes whose command line names this cluster's session (raylets, GCS, agents, dashboard)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if session_name in cmdline:
            found.append(f"{entry.name}: {cmdline[:160]}")
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def _eventually_gone(session_name: str, pids: list[int], timeout_s: float = 15.0) -> tuple[list[str], list[int]]:
    deadline = time.monotonic() + timeout_s
    while True:
        left, live = _processes_of(session_name), [pid for pid in pids if _alive(pid)]
        if (not left and not live) or time.monotonic() > deadline:
            return left, live
        time.sleep(0.5)


@pytest.fixture(scope="module")
def scenario() -> dict:
    try:
        proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, env=_env(), capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"multi-node scenario ran past {RUN_TIMEOUT_S}s; stderr tail:\n{(exc.stderr or '')[-4000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"no output (rc={proc.returncode}); stderr tail:\n{proc.stderr[-4000:]}"
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError:
        pytest.fail(f"last stdout line is not JSON (rc={proc.returncode}): {lines[-1][:500]}\n"
                    f"stderr tail:\n{proc.stderr[-4000:]}")
    assert result["ok"], f"{result.get('error')}\n{result.get('traceback')}\nstderr tail:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0
    return result


@pytest.mark.timeout(450)
def test_replicas_land_only_where_their_resources_are(scenario):
    nodes, resources = scenario["nodes"], scenario["nodes_resources"]
    head, gpu, cpu = nodes["head"], nodes["gpu"], nodes["cpu"]
    assert len({head, gpu, cpu}) == 3 and set(resources) == {head, gpu, cpu}
    for cpu_only in (head, cpu):
        assert resources[cpu_only].get("GPU", 0) == 0 and "gpu_node" not in resources[cpu_only]
    assert resources[cpu]["cpu_node"] == 1
    assert resources[gpu]["GPU"] == 2 and resources[gpu]["gpu_node"] == 1
    assert scenario["app_status"] == {"mn_sdxl": "RUNNING", "mn_embed": "RUNNING"}

    # Both SDXL replicas (autoscaling min = max = 2) are alive on the GPU node, holding their GPU share.
    sdxl = scenario["sdxl_replicas"]
    assert len(sdxl) == 2 and scenario["sdxl_running_replicas"] == 2
    for replica in sdxl:
        assert replica["state"] == "ALIVE"
        assert replica["node_id"] == gpu, f"SDXL replica {replica['name']} placed off the GPU node"
        assert replica["required_resources"] == pytest.approx({"CPU": 0.1, "GPU": 0.5, "gpu_node": 0.1})

    # Ray's own ledger: the GPU node lost exactly two half-GPUs and two label shares; no SDXL replica took
    # CPU on the CPU-only nodes, although both had room (0.1 CPU each).
    available = scenario["available_per_node"]
    assert available[gpu]["GPU"] == pytest.approx(2 - 2 * 0.5)
    assert available[gpu]["gpu_node"] == pytest.approx(1 - 2 * 0.1)
    for cpu_only in (head, cpu):
        assert available[cpu_only].get("GPU", 0) == 0
        assert available[cpu_only]["CPU"] >= 0.9 - 1e-6  # at most the Embedder's 0.1 CPU went here

    # The Embedder asks for no GPU and no label.
    (embedder,) = scenario["embedder_replicas"]
    assert embedder["state"] == "ALIVE" and embedder["node_id"] in (head, gpu, cpu)
    assert embedder["required_resources"].get("GPU", 0) == 0 and "gpu_node" not in embedder["required_resources"]
    assert scenario["embedding_dim"] > 0 and scenario["embedding_finite"]


@pytest.mark.timeout(450)
def test_generation_through_the_handle_is_served_by_a_gpu_node_replica(scenario):
    replica_ids = {replica["name"].rsplit("#", 1)[-1] for replica in scenario["sdxl_replicas"]}
    assert len(replica_ids) == 2
    assert len(scenario["images"]) == 4
    for image in scenario["images"]:
        assert image["png_magic"] == PNG_MAGIC and image["png_bytes"] > 100
        assert (image["width"], image["height"]) == (64, 64) and image["model"] == "sdxl"
        assert image["replica"] in replica_ids  # metadata.replica names a replica on the GPU node
    assert scenario["sdxl_info"]["replica"] in replica_ids and scenario["sdxl_info"]["source"] == "tiny"


@pytest.mark.timeout(450)
def test_a_deployment_no_node_can_hold_is_never_placed(scenario):
    impossible = scenario["impossible"]
    assert len(impossible["observed"]) >= 3  # watched for several seconds
    for seen in impossible["observed"]:
        assert seen["app_status"] != "RUNNING" and seen["deployment_status"] != "HEALTHY", seen
        assert "RUNNING" not in seen["replica_states"], seen
        assert seen["actor_states"] and set(seen["actor_states"]) <= {"PENDING_CREATION", "DEPENDENCIES_UNREADY"}
    for actor in impossible["actors"]:
        assert actor["node_id"] is None and not actor["pid"]
        assert actor["required_resources"]["GPU"] == 4


def asset_setting(scenario: dict, name: str) -> dict:
    """One storage setting's report; its generation succeeded with the runner and the ingress on their nodes."""
    assets = scenario["assets"]
    assert "error" not in assets, f"{assets.get('error')}\n{assets.get('traceback')}"
    found, nodes = assets[name], scenario["nodes"]
    assert found["generation_status"] == 200, found["generation_error"]
    assert [r["node_id"] for r in found["ingress"]] == [nodes["head"]]
    assert [r["node_id"] for r in found["runner"]] == [nodes["cpu"]]
    assert [r["node_id"] for r in found["sdxl"]] == [nodes["gpu"]]
    return found


def written(found: dict) -> dict[str, dict[str, str]]:
    """Where the generated asset's bytes are, folder by folder: {folder: {path: digest}}."""
    return {folder: files for folder, files in found["folders"].items() if files}


@pytest.mark.timeout(450)
def test_separate_asset_folders_do_not_serve_another_nodes_assets(scenario):
    found = asset_setting(scenario, "separate")
    key = found["asset_id"]
    assert written(found) == {"cpu": {f"{key[:2]}/{key}": key}}  # the runner's node, content-addressed
    assert found["download_status"] == 404  # the ingress's own folder on the head node does not have it
    assert found["objects"] == {}


@pytest.mark.timeout(450)
def test_a_folder_every_node_shares_serves_the_runners_assets(scenario):
    found = asset_setting(scenario, "shared")
    key = found["asset_id"]
    earlier = scenario["assets"]["separate"]["folders"]["cpu"]  # the first setting's image, left on the CPU node
    assert written(found) == {"shared": {f"{key[:2]}/{key}": key}, "cpu": earlier}
    assert found["download_status"] == 200 and found["download_digest"] == key
    assert found["download_png"] == PNG_MAGIC


@pytest.mark.timeout(450)
def test_an_object_store_serves_the_runners_assets_with_no_shared_folder(scenario):
    found = asset_setting(scenario, "object_store")
    key = found["asset_id"]
    assert found["objects"] == {f"assets/{key[:2]}/{key}": key}
    assert found["download_status"] == 200 and found["download_digest"] == key
    assert found["download_png"] == PNG_MAGIC
    before = scenario["assets"]["shared"]["folders"]
    assert found["folders"] == before  # no folder on any node took a byte


@pytest.mark.timeout(450)
def test_cluster_is_torn_down(scenario):
    assert not scenario.get("cleanup_errors"), scenario.get("cleanup_errors")
    pids = scenario["actor_pids"] + [r["pid"] for r in scenario["sdxl_replicas"] + scenario["embedder_replicas"]]
    assert pids
    left, live = _eventually_gone(scenario["session_name"], pids)
    assert not left, f"processes of the multi-node session survived: {left}"
    assert not live, f"actor processes survived: {live}"
