"""Multi-node placement scenario on a real local Ray cluster (run as a script by test_multinode.py).

Head node CPU-only (`head_node` label), one "GPU node" worker (virtual GPUs + the `gpu_node` label resource) and one
CPU-only worker (`cpu_node` label). Deploys the real SDXL (2 replicas, GPU share + `gpu_node`) and Embedder
deployments through `deployments.builder.bind`, then reports where Ray placed every replica, what it
reserved, and what real calls returned; then where the montage app's assets land (multinode_assets.py), over its own
Redis and moto's S3 emulator. Its own process, so its cluster never meets the suite's
session Ray instance. The last stdout line is one JSON object; everything else goes to stderr.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for _var in ("RAY_ADDRESS", "RAY_NAMESPACE", "RAY_JOB_CONFIG_JSON_ENV_VAR"):
    os.environ.pop(_var, None)  # never attach to a cluster this process did not start
for _var in ("MONTAGE_ASSET_DIR", "MONTAGE_ASSET_URL"):
    os.environ.pop(_var, None)  # each node gets its own (multinode_assets.node_env)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers

SDXL_APP, EMBED_APP, IMPOSSIBLE_APP = "mn_sdxl", "mn_embed", "mn_impossible"
GPU_NODE_GPUS = 2.0
SDXL_GPUS, SDXL_LABEL = 0.5, 0.1
PENDING_WATCH_S = 5.0
STATE_API: dict[str, str] = {}  # {"address": dashboard URL}: never let the state API guess among clusters


def log(message: str) -> None:
    print(f"[multinode {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _AddressFile:
    """`Cluster` writes/removes the shared default `ray_current_cluster` file; put back what was there,
    so a plain `ray.init()` elsewhere never attaches to (or loses track of) the wrong cluster."""

    def __init__(self) -> None:
        from ray._common.utils import get_ray_address_file

        self.path = get_ray_address_file(None)
        self.before = open(self.path).read() if os.path.exists(self.path) else None

    def restore(self) -> None:
        try:
            if self.before is None:
                if os.path.exists(self.path):
                    os.remove(self.path)
            else:
                with open(self.path, "w") as handle:
                    handle.write(self.before)
        except OSError:
            pass


def replica_actors(app: str, deployment: str, state: str | None = "ALIVE") -> list[dict[str, Any]]:
    from ray.util.state import list_actors

    filters = [("state", "=", state)] if state else []
    actors = list_actors(address=STATE_API["address"], filters=filters, detail=True, limit=1000,
                         raise_on_missing_output=False)
    prefix = f"ServeReplica:{app}:{deployment}"
    return [dict(actor_id=a.actor_id, name=a.name, class_name=a.class_name, state=a.state, node_id=a.node_id,
                 pid=a.pid, required_resources=dict(a.required_resources or {}))
            for a in actors if (a.class_name or "").startswith(prefix)]


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def scenario(nodes: dict[str, str]) -> dict[str, Any]:
    import ray
    from ray import serve

    from config.app import Autoscaling, DeploymentOptions
    from config.families import EmbedderArgs, SDXLArgs
    from deployments.builder import bind
    from deployments.families import EmbedderDeployment, SDXLDeployment
    from models.types import ImageRequest
    from ray.util.state import list_actors

    result: dict[str, Any] = {"nodes": nodes}
    result["cluster_resources"] = ray.cluster_resources()
    result["nodes_resources"] = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}

    http_port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": http_port}, proxy_location="HeadOnly")
    log(f"serve started (http 127.0.0.1:{http_port})")

    sdxl_options = DeploymentOptions(num_gpus=SDXL_GPUS, num_cpus=0.1, resources={"gpu_node": SDXL_LABEL},
                                     autoscaling=Autoscaling(min_replicas=2, max_replicas=2))
    sdxl = serve.run(bind(SDXLDeployment, "SDXL", sdxl_options, SDXLArgs()), name=SDXL_APP, route_prefix=None)
    log("sdxl app running")
    embed = serve.run(bind(EmbedderDeployment, "Embedder", DeploymentOptions(num_cpus=0.1, num_gpus=0),
                           EmbedderArgs(source="tiny")), name=EMBED_APP, route_prefix=None)
    log("embedder app running")

    status = serve.status()
    result["app_status"] = {name: str(app.status.value if hasattr(app.status, "value") else app.status)
                            for name, app in status.applications.items()}
    result["sdxl_running_replicas"] = sum(
        1 for r in replica_actors(SDXL_APP, "SDXL", None) if r["state"] == "ALIVE")

    # Real calls through the handles: four concurrent generations (batched/spread over the replicas).
    requests = [ImageRequest(prompt="a fox" + (f" {i}" if i else ""), width=64, height=64, steps=2, guidance=5.0,
                             seed=1 + i) for i in range(4)]
    responses = [sdxl.generate.remote(request) for request in requests]
    images = [response.result(timeout_s=120) for response in responses]
    result["images"] = [dict(png_magic=image.png[:8].hex(), png_bytes=len(image.png), width=image.width,
                             height=image.height, replica=image.metadata.replica, device=image.metadata.device,
                             model=image.metadata.model) for image in images]
    result["sdxl_info"] = sdxl.info.remote().result(timeout_s=60)
    vector = embed.embed.remote("a fox in the snow").result(timeout_s=60)
    result["embedding_dim"] = len(vector)
    result["embedding_finite"] = all(isinstance(x, float) and x == x for x in vector)
    log("calls done")

    result["sdxl_replicas"] = replica_actors(SDXL_APP, "SDXL")
    result["embedder_replicas"] = replica_actors(EMBED_APP, "Embedder")
    result["available_per_node"] = ray._private.state.available_resources_per_node()
    result["actor_pids"] = sorted(a.pid for a in list_actors(address=STATE_API["address"], limit=1000,
                                                               filters=[("state", "=", "ALIVE")]) if a.pid)

    # A deployment no node can hold: 4 GPUs on the gpu_node label, which only has 2.
    impossible = DeploymentOptions(num_gpus=4, num_cpus=0.1, resources={"gpu_node": SDXL_LABEL},
                                   graceful_shutdown_timeout_s=1.0)  # never started: don't wait on it at shutdown
    serve._run(bind(SDXLDeployment, "SDXL", impossible, SDXLArgs()), name=IMPOSSIBLE_APP, route_prefix=None,
               _blocking=False)
    wait_for(lambda: replica_actors(IMPOSSIBLE_APP, "SDXL", None), 30, "the impossible replica actor to exist")
    observed: list[dict[str, Any]] = []
    deadline = time.monotonic() + PENDING_WATCH_S
    while time.monotonic() < deadline:
        app = serve.status().applications.get(IMPOSSIBLE_APP)
        deployment = app.deployments.get("SDXL") if app else None
        actors = replica_actors(IMPOSSIBLE_APP, "SDXL", None)
        observed.append(dict(
            app_status=str(app.status.value) if app else None,
            deployment_status=str(deployment.status.value) if deployment else None,
            replica_states=dict(deployment.replica_states) if deployment else {},
            actor_states=sorted(a["state"] for a in actors),
            actor_nodes=sorted(a["node_id"] or "" for a in actors),
        ))
        time.sleep(1.0)
    result["impossible"] = dict(observed=observed, actors=replica_actors(IMPOSSIBLE_APP, "SDXL", None))
    log("impossible app observed")
    for app in (SDXL_APP, EMBED_APP, IMPOSSIBLE_APP):  # observed: make room for the assets scenario
        serve.delete(app, _blocking=False)
    result["http_port"] = http_port
    return result


def main() -> int:
    started = time.monotonic()
    result: dict[str, Any] = {"ok": False}
    cluster = None
    address_file = None
    base = Path(tempfile.mkdtemp(prefix="montage-multinode-"))  # the nodes' asset folders, a shared one, Redis
    redis = s3_server = None
    try:
        import ray
        from ray.cluster_utils import Cluster

        from cluster.redis_server import EmbeddedRedis
        from helpers import s3_emulator
        from multinode_assets import BUCKET, assets_scenario, node_env

        redis = EmbeddedRedis(base / "redis", appendonly=False).start()
        s3_server, s3_env = s3_emulator(BUCKET)
        address_file = _AddressFile()
        cluster = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=1, num_gpus=0, resources={"head_node": 1}, env_vars=node_env(base, "head", s3_env),
            include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=free_port(),
            dashboard_agent_listen_port=free_port()))
        address_file.restore()
        gpu_node = cluster.add_node(num_cpus=1, num_gpus=int(GPU_NODE_GPUS), resources={"gpu_node": 1},
                                    env_vars=node_env(base, "gpu", s3_env))
        nodes = {"head": cluster.head_node.node_id, "gpu": gpu_node.node_id}
        result["session_name"] = cluster.head_node.session_name
        nodes["cpu"] = cluster.add_node(num_cpus=1, num_gpus=0, resources={"cpu_node": 1},
                                        env_vars=node_env(base, "cpu", s3_env)).node_id
        cluster.wait_for_nodes()
        context = ray.init(address=cluster.address, log_to_driver=False, namespace="montage-multinode")
        STATE_API["address"] = f"http://{context.dashboard_url or cluster.webui_url}"
        log(f"cluster up: {nodes}")
        result.update(scenario(nodes))
        try:  # its own report: a storage failure leaves the placement results standing
            result["assets"] = assets_scenario(base, redis.url, result["http_port"], s3_env, replica_actors, log)
        except Exception as exc:
            result["assets"] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        result["ok"] = True
    except BaseException as exc:  # report, then clean up, whatever went wrong
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    finally:
        try:
            from ray import serve

            serve.shutdown()
        except Exception as exc:
            result.setdefault("cleanup_errors", []).append(f"serve.shutdown: {exc!r}")
        try:
            import ray

            ray.shutdown()
        except Exception as exc:
            result.setdefault("cleanup_errors", []).append(f"ray.shutdown: {exc!r}")
        if cluster is not None:
            try:
                cluster.shutdown()
            except Exception as exc:
                result.setdefault("cleanup_errors", []).append(f"cluster.shutdown: {exc!r}")
        if address_file is not None:
            address_file.restore()
        for server in (redis, s3_server):
            if server is not None:
                server.stop()
        shutil.rmtree(base, ignore_errors=True)
        result["elapsed_s"] = round(time.monotonic() - started, 1)
        log(f"done in {result['elapsed_s']}s")
    print(json.dumps(result, default=str), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
